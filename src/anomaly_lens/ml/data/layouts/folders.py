"""The layout ``folders``: one folder of images per class, as most people keep them.

``<class>/…/<stem>.<ext>``; the defect-free folder (``normal_class``: a name or a list,
compared without case, e.g. ``good``, ``ok``, ``normal``) gives no label. Optional:
masks in a parallel folder ``masks/<class>/…/<stem>[_mask].png`` and a CSV
(``labels.csv``: ``path``, ``labels``) giving listed images several labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

import pandas as pd

from anomaly_lens.ml.data.layouts import Loader, RawRecord, register_layout
from anomaly_lens.ml.data.layouts.naming import split_labels, strip_suffix, unlabelled

MASK_FOLDER = "masks"


def normal_names(normal_class: str | Iterable[str] | None) -> set[str]:
    """The defect-free class names, lower-cased (folders are named by people)."""
    if normal_class is None:
        return set()
    names = [normal_class] if isinstance(normal_class, str) else list(normal_class)
    return {name.lower() for name in names}


def class_record(pid: str, load: Loader, normal: set[str], keys: dict[str, str]) -> RawRecord:
    """The record of ``<class>/…/<file>``: labelled by its first folder unless normal."""
    image_id = strip_suffix(pid)
    parts = PurePosixPath(pid).parts
    record = RawRecord(image_id, pid, load, keys=dict(keys))
    if len(parts) < 2:
        record.problem = ("unrecognised_name", "not inside a class folder")
        return record
    record.keys["class_folder"] = parts[0]
    if parts[0].lower() not in normal:
        record.labels.add(parts[0])
    return record


def attach_masks(records: dict[str, RawRecord], masks: Mapping[str, Loader], prefix: str) -> list:
    """Give each record its mask ``<prefix><mask id>`` where the mask id is the image id
    (``<stem>`` or ``<stem>_mask``); a mask without its image becomes a record flagged
    ``missing_image``. Call after the labels are final."""
    orphans = []
    for pid, load in sorted(masks.items()):
        mask_id = strip_suffix(pid)
        image_id = prefix + mask_id
        if image_id not in records and mask_id.endswith("_mask"):
            image_id = prefix + mask_id.removesuffix("_mask")
        record = records.get(image_id)
        if record is None:
            orphans.append(
                RawRecord(image_id, pid, None, problem=("missing_image", "mask without an image"))
            )
        elif (cls := _mask_class(record)) is None:
            record.problem = ("mask_ambiguous", "one mask for several labels")
        else:
            record.mask_files[cls] = load
    return orphans


def _mask_class(record: RawRecord) -> str | None:
    """The class a mask in the image's folder belongs to: the folder's class, the one
    label, or "" for a normal image (whose mask inspection requires to be empty)."""
    if record.keys.get("class_folder") in record.labels:
        return record.keys["class_folder"]
    if len(record.labels) > 1:
        return None
    return next(iter(record.labels), "")


def relabel_from_table(
    records: dict[str, RawRecord], table: pd.DataFrame, separator: str
) -> list[RawRecord]:
    """Labels of the images the table lists (``path``, ``labels``) replace their folder's;
    other columns (e.g. ``group``: the part an image shows) become manifest columns. A
    listed path without its image becomes a ``missing_image`` record."""
    if "path" not in table.columns or "labels" not in table.columns:
        raise ValueError("labels CSV needs the columns 'path' and 'labels'")
    missing = []
    for row in table.to_dict("records"):
        path = str(row.pop("path"))
        record = records.get(strip_suffix(path))
        if record is None:
            problem = ("missing_image", "listed in the labels CSV but not found")
            missing.append(RawRecord(strip_suffix(path), path, None, problem=problem))
        elif record.problem is None:
            record.labels = split_labels(row.pop("labels"), separator)
            record.keys |= {k: str(v) for k, v in row.items() if not pd.isna(v)}
    return missing


def from_folders(
    files: Mapping[str, Loader],
    table: pd.DataFrame | None,
    normal_class: str | Iterable[str] | None,
    separator: str = ";",
) -> list[RawRecord]:
    """Images by class folder, masks from ``masks/``, labels from the optional table. A
    folder without subfolders holds new images without labels (what ``inference`` reads)."""
    normal = normal_names(normal_class)
    images = {p: f for p, f in files.items() if not p.startswith(f"{MASK_FOLDER}/")}
    images = {p: f for p, f in images.items() if not p.lower().endswith(".csv")}
    if table is None and all("/" not in pid for pid in images):
        return unlabelled(images, None)
    masks = {p.removeprefix(f"{MASK_FOLDER}/"): f for p, f in files.items() if p not in images}
    masks = {p: f for p, f in masks.items() if not p.lower().endswith(".csv")}
    records = {
        strip_suffix(pid): class_record(pid, load, normal, {}) for pid, load in images.items()
    }
    extra = relabel_from_table(records, table, separator) if table is not None else []
    extra += attach_masks(records, masks, prefix="")
    return [*records.values(), *extra]


@register_layout("folders")
def _folders(files, table, settings) -> list[RawRecord]:
    return from_folders(files, table, settings.normal_class, settings.label_separator)
