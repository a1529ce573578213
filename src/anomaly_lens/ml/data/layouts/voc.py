"""The layout ``voc``: images with Pascal VOC XML boxes."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Mapping
from pathlib import PurePosixPath

from anomaly_lens.ml.data.layouts import Box, Loader, RawRecord, register_layout
from anomaly_lens.ml.data.layouts.naming import named_record, strip_suffix, unlabelled


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
            record = named_record(pattern, strip_suffix(pid), pid, load)
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
                strip_suffix(pid),
                pid,
                None,
                problem=("missing_image", "XML file without an image"),
            )
        )
    return records


@register_layout("voc")
def _voc(images, xml_files, settings) -> list[RawRecord]:
    voc = settings.voc
    if xml_files is None:  # new images without annotations (inference): no labels
        return unlabelled(images, settings.filename_pattern)
    return from_voc(
        images, xml_files, voc.label_source, voc.prefix_pattern, settings.filename_pattern
    )
