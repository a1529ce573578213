"""Raw layouts are registered adapters: a new layout is one module of ``ml.data.layouts``
with a function under ``@register_layout``, read by name like the built-in ones."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from anomaly_lens.ml.data import layouts
from anomaly_lens.ml.data.layouts import LAYOUTS, RawRecord, read_layout, register_layout


def test_a_registered_layout_is_read_by_name(monkeypatch):
    monkeypatch.setattr(layouts, "RAW_LAYOUTS", dict(layouts.RAW_LAYOUTS))

    @register_layout("flat_list")
    def flat_list(images, annotations, settings):
        return [
            RawRecord(image_id=pid, partition_id=pid, load=load, labels={annotations[pid]})
            for pid, load in images.items()
        ]

    images = {"a": lambda: b"a", "b": lambda: b"b"}
    records = read_layout("flat_list", images, {"a": "dent", "b": "scratch"}, None)
    assert [(r.image_id, r.labels) for r in records] == [("a", {"dent"}), ("b", {"scratch"})]
    with pytest.raises(ValueError, match="layout must be one of .*flat_list"):
        read_layout("nope", images, None, None)


def test_the_built_in_layouts_read_their_settings():
    assert set(LAYOUTS) == {"synthetic", "class_folders", "voc", "manifest_csv"}  # one file each
    settings = SimpleNamespace(label_separator=";")
    table = {"path": ["x.png"], "labels": ["dent;scratch"]}
    records = read_layout("manifest_csv", {"x.png": lambda: b""}, pd.DataFrame(table), settings)
    assert [r.labels for r in records] == [{"dent", "scratch"}]
