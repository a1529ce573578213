"""The layout ``manifest_csv``: a CSV of image paths and labels."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from anomaly_lens.ml.data.layouts import Loader, RawRecord, register_layout
from anomaly_lens.ml.data.layouts.naming import split_labels, strip_suffix, unlabelled


def from_manifest_csv(
    images: Mapping[str, Loader], table: pd.DataFrame, label_separator: str
) -> list[RawRecord]:
    """A CSV with ``path``, ``labels`` and optional ``mask_path``, ``mask_class``, ``view``.

    Paths are relative to the images folder; any other column is kept as a sample key.
    """
    if "path" not in table.columns or "labels" not in table.columns:
        raise ValueError("manifest CSV needs the columns 'path' and 'labels'")
    known = {"path", "labels", "mask_path", "mask_class", "view"}
    records = []
    for row in table.to_dict("records"):
        path = str(row["path"])
        load = images.get(path)
        labels = split_labels(row["labels"], label_separator)
        record = RawRecord(
            strip_suffix(path),
            path,
            load,
            view=str(row.get("view") or "default"),
            keys={k: str(v) for k, v in row.items() if k not in known and not pd.isna(v)},
            labels=labels,
        )
        if load is None:
            record.problem = ("missing_image", "listed in the manifest CSV but not found")
        mask_path = row.get("mask_path")
        if record.problem is None and isinstance(mask_path, str) and mask_path:
            mask_class = row.get("mask_class")
            if not isinstance(mask_class, str) or not mask_class:
                mask_class = next(iter(labels)) if len(labels) == 1 else None
            if mask_class is None:
                record.problem = ("mask_ambiguous", "one mask for several labels: set mask_class")
            elif mask_path not in images:
                record.problem = ("missing_mask", f"mask file {mask_path!r} not found")
            else:
                record.mask_files[mask_class] = images[mask_path]
        records.append(record)
    return records


@register_layout("manifest_csv")
def _manifest_csv(images, table, settings) -> list[RawRecord]:
    if table is None:  # new images without a CSV (inference): every image, no labels
        return unlabelled(images, None)  # the CSV names views and groups, not the files
    return from_manifest_csv(images, table, settings.label_separator)
