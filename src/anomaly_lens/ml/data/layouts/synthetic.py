"""The layout ``synthetic``: the generated demo data."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pandas as pd

from anomaly_lens.ml.data.layouts import Loader, RawRecord, register_layout
from anomaly_lens.ml.data.layouts.naming import named_record, strip_suffix


def from_synthetic(
    images: Mapping[str, Loader], annotations: pd.DataFrame | None, filename_pattern: str
) -> list[RawRecord]:
    """Images per view folder (``<view>/<name>.png``) plus a Severstal-style RLE table
    (None: images without labels, e.g. new images to predict)."""
    if annotations is None:
        annotations = pd.DataFrame(columns=["ImageId", "ClassId", "EncodedPixels"])
    missing = {"ImageId", "ClassId", "EncodedPixels"} - set(annotations.columns)
    if missing:
        raise ValueError(f"annotations CSV lacks columns {sorted(missing)}")
    pattern = re.compile(filename_pattern)
    records = {
        strip_suffix(pid): named_record(pattern, strip_suffix(pid), pid, load)
        for pid, load in images.items()
    }
    for row in annotations.itertuples(index=False):
        image_id = strip_suffix(str(row.ImageId))
        encoded = "" if pd.isna(row.EncodedPixels) else str(row.EncodedPixels).strip()
        if image_id not in records:
            records[image_id] = RawRecord(
                image_id,
                str(row.ImageId),
                None,
                problem=("missing_image", "annotated in the RLE table but no image file"),
            )
            continue
        if encoded:
            record = records[image_id]
            record.labels.add(str(row.ClassId))
            record.rle.setdefault(str(row.ClassId), []).append(encoded)
    return list(records.values())


@register_layout("synthetic")
def _synthetic(images, annotations, settings) -> list[RawRecord]:
    return from_synthetic(images, annotations, settings.filename_pattern)
