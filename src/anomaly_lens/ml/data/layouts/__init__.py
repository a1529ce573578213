"""Adapters from raw dataset layouts to one list of ``RawRecord``.

Each adapter takes what the raw layer holds (a mapping of partition id to a callable that
returns the file's bytes, plus the layout's annotations) and returns records that name
where every image and annotation came from. Adapters are registered by layout name
(``register_layout``), the names ``ingestion.layout`` accepts (``LAYOUTS``): one module of
this package per layout, found and imported here, so adding a layout is one file. Problems an adapter can already see (a file
name that does not parse, an image without its XML) are attached to the record instead of
raised, so the inspection step can quarantine them with their reason.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


# Every module of this package registers its layout on import.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

LAYOUTS = tuple(sorted(RAW_LAYOUTS))  # the names ``ingestion.layout`` accepts
