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
    assert set(LAYOUTS) == {  # one file each
        *("synthetic", "class_folders", "folders", "mvtec", "voc", "manifest_csv")
    }
    settings = SimpleNamespace(label_separator=";")
    table = {"path": ["x.png"], "labels": ["dent;scratch"]}
    records = read_layout("manifest_csv", {"x.png": lambda: b""}, pd.DataFrame(table), settings)
    assert [r.labels for r in records] == [{"dent", "scratch"}]


def _files(*paths: str) -> dict:
    return {path: (lambda path=path: path.encode()) for path in paths}


def test_folders_name_classes_by_folder_and_normal_ones_without_case():
    settings = SimpleNamespace(normal_class=["good", "ok"], label_separator=";")
    files = _files("Good/a.png", "OK/b.png", "scratch/deep/c.png", "masks/scratch/deep/c_mask.png")
    records = {r.image_id: r for r in read_layout("folders", files, None, settings)}
    assert {k: r.labels for k, r in records.items()} == {
        "Good/a": set(),
        "OK/b": set(),
        "scratch/deep/c": {"scratch"},
    }
    assert set(records["scratch/deep/c"].mask_files) == {"scratch"}
    table = pd.DataFrame({"path": ["scratch/deep/c.png"], "labels": ["scratch;dent"]})
    table["group"] = "part7"  # further columns become manifest columns
    (relabelled,) = [r for r in read_layout("folders", files, table, settings) if r.labels]
    assert relabelled.labels == {"scratch", "dent"} and relabelled.keys["group"] == "part7"
    assert set(relabelled.mask_files) == {"scratch"}  # the mask is its folder's class


def test_a_folder_without_subfolders_is_new_images_without_labels():
    for layout in ("folders", "mvtec"):
        settings = SimpleNamespace(normal_class="good", label_separator=";")
        records = read_layout(layout, _files("x.png", "y.png"), None, settings)
        assert [(r.image_id, r.labels, r.problem) for r in records] == [
            ("x", set(), None),
            ("y", set(), None),
        ]


def test_mvtec_keeps_its_split_and_reads_ground_truth_masks():
    settings = SimpleNamespace(normal_class="good")
    images = _files("train/good/000.png", "test/good/000.png", "test/crack/000.png", "license.txt")
    images |= _files("ground_truth/crack/000_mask.png")  # skipped: the masks are the second entry
    masks = _files("crack/000_mask.png", "crack/001_mask.png")
    records = {r.image_id: r for r in read_layout("mvtec", images, masks, settings)}
    assert records["train/good/000"].keys["mvtec_split"] == "train"
    assert records["test/good/000"].labels == set()
    crack = records["test/crack/000"]
    assert crack.labels == {"crack"} and crack.keys["mvtec_split"] == "test"
    assert crack.mask_files["crack"]() == b"crack/000_mask.png"
    assert records["test/crack/001"].problem[0] == "missing_image"  # a mask without its image
    assert records["license"].problem[0] == "unrecognised_name"
    assert "ground_truth/crack/000_mask" not in records
