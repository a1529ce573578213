"""The layout ``class_folders``: one folder of images per class (and per view)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from anomaly_lens.ml.data.layouts import Loader, RawRecord, register_layout
from anomaly_lens.ml.data.layouts.folders import normal_names
from anomaly_lens.ml.data.layouts.naming import named_record, strip_suffix


def from_class_folders(
    images: Mapping[str, Loader],
    masks: Mapping[str, Loader] | None,
    filename_pattern: str,
    normal_class: str | list[str] | None,
) -> list[RawRecord]:
    """``<Class>/.../<stem>.<img>`` with a same-stem mask file beside each image (None: a
    folder without masks).

    The pattern's ``class_folder`` group names the image's class; ``normal_class`` marks
    the defect-free folder (a name or names, without case), whose images get no label.
    """
    pattern = re.compile(filename_pattern)
    masks, normal = masks or {}, normal_names(normal_class)
    records = {}
    for pid, load in images.items():
        image_id = strip_suffix(pid)
        record = named_record(pattern, image_id, pid, load)
        cls = record.keys.get("class_folder")
        if record.problem is None and cls is None:
            record.problem = ("unrecognised_name", "pattern has no class_folder group")
        if cls and cls.lower() not in normal:
            record.labels.add(cls)
        records[image_id] = record
    for pid, load in masks.items():
        image_id = strip_suffix(pid)
        record = records.get(image_id)
        if record is None:
            records[f"{image_id}#mask"] = RawRecord(
                image_id, pid, None, problem=("missing_image", "mask file without an image")
            )
        elif record.labels:
            record.mask_files[next(iter(record.labels))] = load
        else:
            record.mask_files[""] = load  # normal image: its mask must be empty
    return list(records.values())


@register_layout("class_folders")
def _class_folders(images, masks, settings) -> list[RawRecord]:
    return from_class_folders(images, masks, settings.filename_pattern, settings.normal_class)
