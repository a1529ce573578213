"""File-name parsing the layouts share: a pattern's named fields, the record they make."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import PurePosixPath

from anomaly_lens.ml.data.layouts import Loader, RawRecord


def parse_name(pattern: re.Pattern, image_id: str) -> tuple[str, dict[str, str]] | None:
    """Split an image id into (view, key fields) with the layout's named-group pattern."""
    match = pattern.fullmatch(image_id) or pattern.match(image_id)
    if match is None:
        return None
    keys = {k: v for k, v in match.groupdict().items() if v is not None}
    return keys.pop("view", "default"), keys


def named_record(
    pattern: re.Pattern, image_id: str, partition_id: str, load: Loader | None
) -> RawRecord:
    """A record whose view and keys come from its name, or one flagged as unparsable."""
    parsed = parse_name(pattern, image_id)
    if parsed is None:
        return RawRecord(
            image_id,
            partition_id,
            load,
            problem=("unrecognised_name", f"does not match pattern {pattern.pattern!r}"),
        )
    view, keys = parsed
    return RawRecord(image_id, partition_id, load, view=view, keys=keys)


def split_labels(cell, separator: str) -> set[str]:
    """The labels of one table cell (``dent;scratch``); empty or missing: none."""
    text = "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else str(cell)
    return {label.strip() for label in text.split(separator) if label.strip()}


def strip_suffix(partition_id: str) -> str:
    path = PurePosixPath(partition_id)
    return str(path.with_suffix("")) if path.suffix else partition_id


def unlabelled(images: Mapping[str, Loader], filename_pattern: str | None) -> list[RawRecord]:
    """One record per image without labels: new images given without annotations, whose
    labels are what is to be predicted. Named by ``filename_pattern`` (view and keys); with
    None, every image is its own sample in the view ``default``."""
    if filename_pattern is None:
        return [RawRecord(strip_suffix(pid), pid, load) for pid, load in sorted(images.items())]
    pattern = re.compile(filename_pattern)
    return [
        named_record(pattern, strip_suffix(pid), pid, load) for pid, load in sorted(images.items())
    ]
