"""Adapters from raw dataset layouts to one list of ``RawRecord``.

Each adapter takes what the raw layer holds (a mapping of partition id to a callable that
returns the file's bytes, plus the layout's annotations) and returns records that name
where every image and annotation came from. Adapters are registered by layout name
(``register_layout``), the names ``ingestion.layout`` accepts (``LAYOUTS``). Problems an adapter can already see (a file
name that does not parse, an image without its XML) are attached to the record instead of
raised, so the inspection step can quarantine them with their reason.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

Loader = Callable[[], bytes]


@dataclass(frozen=True)
class Box:
    """A pixel box: ``x0, y0`` inclusive, ``x1, y1`` exclusive, 0-based."""

    label: str
    x0: int
    y0: int
    x1: int
    y1: int


@dataclass
class RawRecord:
    """One image as the raw layer describes it, before any file is opened."""

    image_id: str
    partition_id: str  # key of the file in the raw layer (or the name an annotation gives)
    load: Loader | None  # None: the annotation names an image that is not there
    view: str = "default"
    keys: dict[str, str] = field(default_factory=dict)
    labels: set[str] = field(default_factory=set)
    rle: dict[str, list[str]] = field(default_factory=dict)  # class -> RLE strings
    mask_files: dict[str, Loader] = field(default_factory=dict)  # class -> mask bytes
    boxes: list[Box] = field(default_factory=list)
    problem: tuple[str, str] | None = None  # (reason, detail) seen by the adapter


def _parse_name(pattern: re.Pattern, image_id: str) -> tuple[str, dict[str, str]] | None:
    """Split an image id into (view, key fields) with the layout's named-group pattern."""
    match = pattern.fullmatch(image_id) or pattern.match(image_id)
    if match is None:
        return None
    keys = {k: v for k, v in match.groupdict().items() if v is not None}
    return keys.pop("view", "default"), keys


def _named_record(
    pattern: re.Pattern, image_id: str, partition_id: str, load: Loader | None
) -> RawRecord:
    """A record whose view and keys come from its name, or one flagged as unparsable."""
    parsed = _parse_name(pattern, image_id)
    if parsed is None:
        return RawRecord(
            image_id,
            partition_id,
            load,
            problem=("unrecognised_name", f"does not match pattern {pattern.pattern!r}"),
        )
    view, keys = parsed
    return RawRecord(image_id, partition_id, load, view=view, keys=keys)


def _strip_suffix(partition_id: str) -> str:
    path = PurePosixPath(partition_id)
    return str(path.with_suffix("")) if path.suffix else partition_id


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
        _strip_suffix(pid): _named_record(pattern, _strip_suffix(pid), pid, load)
        for pid, load in images.items()
    }
    for row in annotations.itertuples(index=False):
        image_id = _strip_suffix(str(row.ImageId))
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


def from_class_folders(
    images: Mapping[str, Loader],
    masks: Mapping[str, Loader] | None,
    filename_pattern: str,
    normal_class: str | None,
) -> list[RawRecord]:
    """``<Class>/.../<stem>.<img>`` with a same-stem mask file beside each image (None: a
    folder without masks).

    The pattern's ``class_folder`` group names the image's class; ``normal_class`` marks
    the defect-free folder, whose images get no label.
    """
    pattern = re.compile(filename_pattern)
    masks = masks or {}
    records = {}
    for pid, load in images.items():
        image_id = _strip_suffix(pid)
        record = _named_record(pattern, image_id, pid, load)
        cls = record.keys.get("class_folder")
        if record.problem is None and cls is None:
            record.problem = ("unrecognised_name", "pattern has no class_folder group")
        if cls and cls != normal_class:
            record.labels.add(cls)
        records[image_id] = record
    for pid, load in masks.items():
        image_id = _strip_suffix(pid)
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


def parse_voc(text: str) -> tuple[list[Box], tuple[int, int] | None]:
    """Objects of one Pascal VOC XML as 0-based boxes, and its declared (width, height).

    VOC coordinates are 1-based and inclusive; ``xmin = 0`` is tolerated and read as 1.
    """
    root = ET.fromstring(text)
    size = root.find("size")
    declared = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        declared = (int(float(size.findtext("width"))), int(float(size.findtext("height"))))
    boxes = []
    for obj in root.iter("object"):
        name, bndbox = obj.findtext("name"), obj.find("bndbox")
        if not name or bndbox is None:
            raise ValueError("an <object> lacks <name> or <bndbox>")
        x0, y0, x1, y1 = (
            round(float(bndbox.findtext(tag))) for tag in ("xmin", "ymin", "xmax", "ymax")
        )
        boxes.append(Box(name.strip(), _voc_start(x0), _voc_start(y0), x1, y1))
    return boxes, declared


def _voc_start(value: int) -> int:
    """1-based inclusive start to 0-based; 0 is read as 1, negatives stay out of bounds."""
    return value - 1 if value >= 1 else value


def from_voc(
    images: Mapping[str, Loader],
    xml_files: Mapping[str, Loader],
    label_source: str,
    prefix_pattern: str,
    filename_pattern: str = r"(?P<stem>.+)",
) -> list[RawRecord]:
    """Images and VOC XML files matched by file stem, both searched recursively.

    ``label_source`` is ``objects`` (labels from the boxes), ``filename_prefix`` (from the
    ``label`` group of ``prefix_pattern`` on the stem) or ``both`` (their union).
    """
    if label_source not in ("objects", "filename_prefix", "both"):
        raise ValueError(f"label_source must be objects, filename_prefix or both: {label_source}")
    pattern, prefix = re.compile(filename_pattern), re.compile(prefix_pattern)
    by_stem: dict[str, list[tuple[str, Loader]]] = defaultdict(list)
    for pid, load in images.items():
        by_stem[PurePosixPath(pid).stem].append((pid, load))
    xml_by_stem = {PurePosixPath(pid).stem: (pid, load) for pid, load in xml_files.items()}
    records = []
    for stem, entries in sorted(by_stem.items()):
        for pid, load in entries:
            record = _named_record(pattern, _strip_suffix(pid), pid, load)
            records.append(record)
            if len(entries) > 1:
                record.problem = ("ambiguous_stem", f"{len(entries)} images share stem {stem!r}")
            elif stem not in xml_by_stem:
                record.problem = ("missing_annotation", "image without an XML file")
            if record.problem:
                continue
            try:
                record.boxes, _ = parse_voc(xml_by_stem[stem][1]().decode("utf-8"))
            except (ET.ParseError, ValueError, TypeError, UnicodeDecodeError) as err:
                record.problem = ("annotation_unreadable", str(err))
                continue
            if label_source in ("objects", "both"):
                record.labels |= {box.label for box in record.boxes}
            if label_source in ("filename_prefix", "both"):
                found = prefix.match(stem)
                if found is None:
                    record.problem = ("unrecognised_name", f"no label prefix in {stem!r}")
                else:
                    record.labels.add(found.group("label"))
    for stem in sorted(set(xml_by_stem) - set(by_stem)):
        pid = xml_by_stem[stem][0]
        records.append(
            RawRecord(
                _strip_suffix(pid),
                pid,
                None,
                problem=("missing_image", "XML file without an image"),
            )
        )
    return records


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
        labels = {
            label.strip()
            for label in str("" if pd.isna(row["labels"]) else row["labels"]).split(label_separator)
            if label.strip()
        }
        record = RawRecord(
            _strip_suffix(path),
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


# layout name -> adapter(images, annotations, settings): ``settings`` is the ingestion
# block (its ``filename_pattern``, ``normal_class``, ``voc``, ``label_separator``).
RAW_LAYOUTS: dict[str, Callable[[Mapping[str, Loader], Any, Any], list[RawRecord]]] = {}


def register_layout(name: str):
    """Function decorator: the adapter reads ``ingestion.layout: <name>``."""

    def register(adapter):
        RAW_LAYOUTS[name] = adapter
        return adapter

    return register


def read_layout(name: str, images: Mapping[str, Loader], annotations: Any, settings: Any):
    """The records of the raw layer in the layout ``name``."""
    if name not in RAW_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(RAW_LAYOUTS)}, not {name!r}")
    return RAW_LAYOUTS[name](images, annotations, settings)


@register_layout("synthetic")
def _synthetic(images, annotations, settings) -> list[RawRecord]:
    return from_synthetic(images, annotations, settings.filename_pattern)


@register_layout("class_folders")
def _class_folders(images, masks, settings) -> list[RawRecord]:
    return from_class_folders(images, masks, settings.filename_pattern, settings.normal_class)


@register_layout("voc")
def _voc(images, xml_files, settings) -> list[RawRecord]:
    voc = settings.voc
    return from_voc(
        images, xml_files, voc.label_source, voc.prefix_pattern, settings.filename_pattern
    )


@register_layout("manifest_csv")
def _manifest_csv(images, table, settings) -> list[RawRecord]:
    return from_manifest_csv(images, table, settings.label_separator)


LAYOUTS = tuple(RAW_LAYOUTS)  # the names ``ingestion.layout`` accepts
