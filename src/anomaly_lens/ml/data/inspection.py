"""Open every raw record once, check it, measure it, and sort it into manifest or quarantine.

Quarantine reasons (stable codes, one per row, with a free-text ``detail``):

========================  ==============================================================
``zero_byte``             the image file is empty
``unreadable``            the file is not a decodable image
``truncated``             the image data ends early
``missing_image``         an annotation or mask names an image that is not there
``missing_annotation``    an image the layout requires an annotation for has none
``annotation_unreadable`` the annotation file cannot be parsed
``unrecognised_name``     the file name does not match the layout's pattern
``ambiguous_stem``        several images share the stem an annotation is matched by
``mask_*``                the mask is unreadable, of another size, or breaks the value rule
``mask_label_conflict``   a mask of an image labelled normal has foreground pixels, or a
                          mask's class is not among the image's labels
``rle_malformed``         an RLE string is not start/length integer pairs
``rle_out_of_bounds``     an RLE run leaves the image
``box_out_of_bounds``     a box leaves the image or is empty
``unknown_label``         a label that is not in the configured class list
``duplicate``             same content hash as an earlier image (``duplicate_of`` names it)
``duplicate_label_conflict`` same content as another image that carries other labels
``too_large``             more pixels than allowed (read from the header, never decoded)
``too_small``             a side shorter than allowed
``outside_raw_dir``       a link that leads out of the raw folder
========================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly_lens.ml.data import imaging, rle
from anomaly_lens.ml.data.layouts import RawRecord

QUARANTINE_COLUMNS = ["image_id", "partition_id", "reason", "detail", "duplicate_of"]
MASK_COLUMNS = ["image_id", "class", "encoded_pixels", "area", "weak_mask"]
BOX_COLUMNS = ["image_id", "class", "x0", "y0", "x1", "y1"]


@dataclass(frozen=True)
class MaskRule:
    """How mask files are turned into binary masks (see ``imaging.binarize_mask``)."""

    threshold: int = 128
    strict: bool = False


@dataclass(frozen=True)
class Checks:
    """What inspection accepts beyond a decodable file."""

    limits: imaging.SizeLimits = imaging.SizeLimits()
    # Exact copies whose labels differ: ``quarantine`` every copy, or ``keep_first``.
    duplicate_label_conflict: str = "quarantine"


@dataclass
class Inspection:
    """The tables ingestion writes."""

    manifest: pd.DataFrame
    masks: pd.DataFrame
    source_boxes: pd.DataFrame
    quarantine: pd.DataFrame
    classes: list[str]


class Rejected(Exception):
    """Raised inside inspection to send a record to quarantine."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def resolve_classes(records: Sequence[RawRecord], configured: Sequence[str]) -> list[str]:
    """The configured class list, or (when empty) the sorted labels found in the data."""
    if configured:
        return list(configured)
    return sorted({label for r in records if r.problem is None for label in r.labels})


def _masks_of(
    record: RawRecord, height: int, width: int, rule: MaskRule, max_pixels: int
) -> dict[str, tuple]:
    """Binary mask per class with its weak flag; raise ``Rejected`` on any bad annotation."""
    masks: dict[str, tuple[np.ndarray, bool]] = {}
    for cls, encodings in record.rle.items():
        mask = np.zeros((height, width), dtype=bool)
        for encoded in encodings:
            try:
                mask |= rle.decode(encoded, height, width)
            except rle.RLEError as err:
                reason = "rle_out_of_bounds" if "outside" in str(err) else "rle_malformed"
                raise Rejected(reason, f"class {cls}: {err}") from None
        masks[cls] = (mask, False)
    for cls, load in record.mask_files.items():
        try:
            mask = imaging.binarize_mask(
                load(), height, width, rule.threshold, rule.strict, max_pixels
            )
        except imaging.ImageProblem as err:
            raise Rejected(err.reason, err.detail) from None
        if cls == "":
            if mask.any():
                raise Rejected("mask_label_conflict", "image labelled normal has a non-empty mask")
            continue
        if cls not in record.labels:
            raise Rejected(
                "mask_label_conflict",
                f"a mask of class {cls!r} on an image labelled {sorted(record.labels) or 'normal'}",
            )
        masks[cls] = (mask, False)
    for box in record.boxes:
        if not (0 <= box.x0 < box.x1 <= width and 0 <= box.y0 < box.y1 <= height):
            raise Rejected(
                "box_out_of_bounds",
                f"{box.label} box ({box.x0},{box.y0},{box.x1},{box.y1}) in a {width}x{height} image",
            )
        mask, _ = masks.get(box.label, (np.zeros((height, width), dtype=bool), True))
        mask[box.y0 : box.y1, box.x0 : box.x1] = True
        masks[box.label] = (mask, True)
    return masks


def _inspect(
    record: RawRecord, classes: Sequence[str], rule: MaskRule, checks: Checks
) -> tuple[dict, list, list]:
    """Manifest row, mask rows and box rows of one record; raise ``Rejected`` when bad."""
    if record.problem is not None:
        raise Rejected(*record.problem)
    try:
        content = record.load()
        image = imaging.decode_image(content, checks.limits)
    except imaging.ImageProblem as err:
        raise Rejected(err.reason, err.detail) from None
    unknown = sorted(record.labels - set(classes))
    if unknown:
        raise Rejected("unknown_label", f"labels {unknown} not in the class list {list(classes)}")
    masks = _masks_of(record, image.height, image.width, rule, checks.limits.max_pixels)
    row = {
        "image_id": record.image_id,
        "partition_id": record.partition_id,
        "view": record.view,
        **record.keys,
        "width": image.width,
        "height": image.height,
        "mode": image.mode,
        "sha256": imaging.sha256(content),
        "dhash": imaging.difference_hash(image.pixels),
        "labels": sorted(record.labels),
        "mask_source": _mask_source(record),
        **imaging.quality_metrics(image.pixels),
    }
    for cls in classes:
        mask = masks.get(cls, (None, False))[0]
        row[f"has_mask_{cls}"] = bool(mask is not None and mask.any())
        row[f"mask_area_{cls}"] = int(mask.sum()) if mask is not None else 0
    mask_rows = [
        (record.image_id, cls, rle.encode(mask), int(mask.sum()), weak)
        for cls, (mask, weak) in sorted(masks.items())
    ]
    box_rows = [(record.image_id, b.label, b.x0, b.y0, b.x1, b.y1) for b in record.boxes]
    return row, mask_rows, box_rows


def _mask_source(record: RawRecord) -> str:
    if record.boxes:
        return "boxes"
    if record.rle:
        return "rle"
    return "mask_file" if record.mask_files else "none"


def inspect_records(
    records: Sequence[RawRecord],
    configured_classes: Sequence[str],
    rule: MaskRule,
    checks: Checks = Checks(),
) -> Inspection:
    """Inspect all records; bad ones become quarantine rows.

    Exact copies (same content hash) keep the first by ``image_id``; copies that disagree
    on their labels are ``duplicate_label_conflict``: all quarantined, or all but the
    first with ``checks.duplicate_label_conflict = "keep_first"``.
    """
    if checks.duplicate_label_conflict not in ("quarantine", "keep_first"):
        raise ValueError(
            "duplicate_label_conflict must be 'quarantine' or 'keep_first', not "
            f"{checks.duplicate_label_conflict!r}"
        )
    classes = resolve_classes(records, configured_classes)
    rows, mask_rows, box_rows, quarantine = [], [], [], []
    for record in sorted(records, key=lambda r: (r.image_id, r.partition_id)):
        try:
            row, masks, boxes = _inspect(record, classes, rule, checks)
        except Rejected as err:
            quarantine.append((record.image_id, record.partition_id, err.reason, err.detail, None))
            continue
        rows.append(row)
        mask_rows += masks
        box_rows += boxes
    manifest = pd.DataFrame(rows)
    if not manifest.empty:
        manifest, copies = _set_aside_copies(manifest, checks.duplicate_label_conflict)
        quarantine += copies
    kept = set(manifest["image_id"]) if not manifest.empty else set()
    masks = pd.DataFrame(mask_rows, columns=MASK_COLUMNS)
    boxes = pd.DataFrame(box_rows, columns=BOX_COLUMNS)
    return Inspection(
        manifest=manifest,
        masks=masks[masks["image_id"].isin(kept)].reset_index(drop=True),
        source_boxes=boxes[boxes["image_id"].isin(kept)].reset_index(drop=True),
        quarantine=pd.DataFrame(quarantine, columns=QUARANTINE_COLUMNS),
        classes=classes,
    )


def _set_aside_copies(manifest: pd.DataFrame, conflict_rule: str) -> tuple[pd.DataFrame, list]:
    """The manifest without exact copies, and a quarantine row for each copy set aside."""
    first = manifest.groupby("sha256")["image_id"].transform("first")
    label_key = manifest["labels"].map(lambda labels: ";".join(labels) or "(normal)")
    conflicting = label_key.groupby(manifest["sha256"]).transform("nunique") > 1
    rows = []
    for index in manifest.index[(manifest["image_id"] != first) & ~conflicting]:
        detail = f"same content as {first[index]}"
        rows.append(_copy_row(manifest, index, "duplicate", detail, first[index]))
    for _, group in manifest[conflicting].groupby("sha256"):
        labels = " vs ".join(f"{group.at[i, 'image_id']}: {label_key[i]}" for i in group.index)
        detail = f"same content, other labels ({labels})"
        set_aside = group.index[1:] if conflict_rule == "keep_first" else group.index
        for index in set_aside:
            other = (
                first[index] if index != group.index[0] else group.at[group.index[1], "image_id"]
            )
            rows.append(_copy_row(manifest, index, "duplicate_label_conflict", detail, other))
    dropped = {row[0] for row in rows}
    return manifest[~manifest["image_id"].isin(dropped)].reset_index(drop=True), rows


def _copy_row(manifest: pd.DataFrame, index, reason: str, detail: str, other: str) -> tuple:
    return (
        manifest.at[index, "image_id"],
        manifest.at[index, "partition_id"],
        reason,
        detail,
        other,
    )


def squashed(manifest: pd.DataFrame) -> pd.Series:
    """Whether each image is wider or taller than 3:2 (squashed by a stretch to a square)."""
    sides = manifest[["width", "height"]]
    return sides.max(axis=1) > 1.5 * sides.min(axis=1)


def image_geometry(manifest: pd.DataFrame) -> dict:
    """What reading the images as grey squares changes: colour images (read as luminance),
    aspect ratios (squashed unless ``train.resize: pad``) and sizes (large images shrink
    small defects), so the report says what the model will not see."""
    long_side = manifest[["width", "height"]].max(axis=1)
    ratio = long_side / manifest[["width", "height"]].min(axis=1)
    colour = ~manifest["mode"].isin(["L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "F"])
    return {
        "colour_images_read_as_luminance": int(colour.sum()),
        "aspect_ratio_q50_q95_max": [float(x) for x in ratio.quantile([0.5, 0.95, 1.0])],
        "images_beyond_3_to_2": int(squashed(manifest).sum()),
        "long_side_q5_q50_q95": [float(x) for x in long_side.quantile([0.05, 0.5, 0.95])],
    }
