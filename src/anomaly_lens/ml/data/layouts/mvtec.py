"""The layout ``mvtec``: the MVTec AD folder of one category (also written by VisA-style
exports and most anomaly-detection tools).

``train/good/*.png``, ``test/<type>/*.png`` (``test/good`` defect-free) and the masks
``ground_truth/<type>/<stem>_mask.png``. Each record keeps where the data set put it
(``mvtec_split``: train or test), so ``split.given_test`` can honour that split; by
default the split is drawn again, group-aware, like any other layout's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

from anomaly_lens.ml.data.layouts import Loader, RawRecord, register_layout
from anomaly_lens.ml.data.layouts.folders import attach_masks, class_record, normal_names
from anomaly_lens.ml.data.layouts.naming import unlabelled

PARTS = ("train", "test", "validation")


def mvtec_record(pid: str, load: Loader, normal: set[str]) -> RawRecord:
    """``<part>/<class>/<file>`` as a record of its class, keeping its part."""
    part, _, inside = pid.partition("/")
    if part not in PARTS or not inside:
        image_id = str(PurePosixPath(pid).with_suffix(""))
        problem = ("unrecognised_name", f"not under {'/, '.join(PARTS)}/<class>/")
        return RawRecord(image_id, pid, load, problem=problem)
    record = class_record(inside, load, normal, {"mvtec_split": part})
    record.image_id, record.partition_id = f"{part}/{record.image_id}", pid
    return record


def from_mvtec(
    images: Mapping[str, Loader], masks: Mapping[str, Loader] | None, normal_class
) -> list[RawRecord]:
    """Images of ``train/`` and ``test/`` by class folder; ``ground_truth`` masks matched
    to ``test/<type>/<stem>`` (None: no mask folder). A folder without subfolders holds
    new images without labels (what ``inference`` reads)."""
    if all("/" not in pid for pid in images):
        return unlabelled(images, None)
    normal = normal_names(normal_class)
    records = {}
    for pid, load in images.items():
        if not pid.startswith("ground_truth/"):
            record = mvtec_record(pid, load, normal)
            records[record.image_id] = record
    return [*records.values(), *attach_masks(records, masks or {}, prefix="test/")]


@register_layout("mvtec")
def _mvtec(images, masks, settings) -> list[RawRecord]:
    return from_mvtec(images, masks, settings.normal_class)
