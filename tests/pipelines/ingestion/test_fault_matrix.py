"""Raw layers of every layout with every bad case it can hold, beside good files: each
input ends in the manifest or in quarantine with its reason; none is lost. Together the
matrices raise every quarantine reason that docs/data.md lists."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from anomaly_lens.ml.data import rle
from tests.conftest import PROJECT_ROOT

from .conftest import (
    encode,
    ingest,
    load_folders,
    load_synthetic,
    load_voc,
    partitions,
    textured,
    voc_xml,
    write,
)


def grey(seed: int, height: int = 20, width: int = 30) -> np.ndarray:
    return textured(seed, 32)[:height, :width]


def mask(value: int = 255, height: int = 20, width: int = 30) -> bytes:
    pixels = np.zeros((height, width), np.uint8)
    pixels[5:10, 5:15] = value
    return encode(pixels)


def huge_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def faulty_root(tmp_path_factory):
    """Image files of each case; the expected reason (None: kept) by image id."""
    root = tmp_path_factory.mktemp("raw")
    crack, free = root / "MT_Crack/Imgs", root / "MT_Free/Imgs"
    expected = {}

    def image(folder, stem, content, reason, mask_content=None):
        write(folder / f"{stem}.jpg", content)
        if mask_content is not None:
            write(folder / f"{stem}.png", mask_content)
        expected[f"{folder.relative_to(root)}/{stem}"] = reason

    image(crack, "exp1_num_1", encode(grey(1), "PNG"), None, mask())
    image(free, "exp1_num_2", encode(grey(2), "PNG"), "duplicate", mask(0))
    image(crack, "exp1_num_3", b"", "zero_byte", mask())
    image(crack, "exp1_num_4", "not an image, only text", "unreadable", mask())
    image(crack, "exp1_num_5", encode(grey(5), "JPEG")[:200], "truncated", mask())
    image(crack, "exp1_num_6", huge_png(), "too_large", mask())
    image(crack, "exp1_num_7", encode(grey(7, 4, 4), "PNG"), "too_small", mask(255, 4, 4))
    image(crack, "exp1_num_8", encode(grey(8), "PNG"), "mask_size_mismatch", mask(255, 10, 10))
    image(crack, "exp1_num_9", encode(grey(9), "PNG"), "mask_values", mask(60))
    image(free, "exp1_num_10", encode(grey(10), "PNG"), "mask_label_conflict", mask())
    image(crack, "exp1_num_11", encode(grey(11), "PNG"), "mask_unreadable", b"no mask")
    image(crack, "exp1_num_12", encode(grey(12), "PNG"), "mask_zero_byte", b"")
    image(crack, "exp1_num_13", encode(grey(13), "PNG"), "mask_too_large", huge_png())
    truncated_mask = encode(np.full((20, 30), 255, np.uint8), "JPEG")[:150]
    image(crack, "exp1_num_15", encode(grey(15), "PNG"), "mask_truncated", truncated_mask)
    image(crack, "readme", encode(grey(14), "PNG"), "unrecognised_name", mask())
    image(free, "exp1_num_16", encode(grey(2), "PNG"), None, mask(0))  # first by image id
    image(crack, "exp1_num_17", encode(grey(17), "PNG"), "duplicate_label_conflict", mask())
    image(free, "exp1_num_18", encode(grey(17), "PNG"), "duplicate_label_conflict", mask(0))
    outside = tmp_path_factory.mktemp("elsewhere") / "x.jpg"
    outside.write_bytes(encode(grey(19), "PNG"))
    (crack / "exp1_num_19.jpg").symlink_to(outside)
    write(crack / "exp1_num_19.png", mask())
    expected["MT_Crack/Imgs/exp1_num_19"] = "outside_raw_dir"
    write(crack / "exp1_num_20.png", mask())  # a mask without its image
    expected["MT_Crack/Imgs/exp1_num_20"] = "missing_image"
    return root, expected


def outcome(manifest: pd.DataFrame, quarantine: pd.DataFrame) -> dict:
    """Reason per quarantined id, None per kept id; no id may be both or twice."""
    assert len(manifest) + len(quarantine) == len(
        set(manifest["image_id"]) | set(quarantine["image_id"])
    )
    return dict(zip(quarantine["image_id"], quarantine["reason"], strict=True)) | dict.fromkeys(
        manifest["image_id"]
    )


def test_every_class_folder_file_ends_in_manifest_or_quarantine(
    faulty_root,
    class_folder_params,
):
    root, expected = faulty_root
    manifest, _, _, quarantine, _ = ingest(*load_folders(root), class_folder_params)
    images = len(list(root.rglob("*.jpg")))
    masks_without_image = sum(not p.with_suffix(".jpg").exists() for p in root.rglob("*.png"))
    assert len(manifest) + len(quarantine) == images + masks_without_image
    assert outcome(manifest, quarantine) == expected


def link_outside(folder: Path, name: str, content: bytes, elsewhere: Path) -> None:
    target = elsewhere / name.replace("/", "_")
    target.write_bytes(content)
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).symlink_to(target)


@pytest.fixture
def faulty_rle_root(tmp_path_factory):
    """The demo's layout (``rle`` env): ``images/<view>/<name>.png`` and an RLE CSV."""
    root = tmp_path_factory.mktemp("rle")
    images, expected, annotations = root / "images", {}, []
    spot = np.zeros((16, 16), bool)
    spot[4:8, 4:8] = True

    def image(name, content, reason, label=None, encoded=None):
        write(images / f"{name}.png", content)
        expected[name] = reason
        if label is not None:
            annotations.append((f"{name}.png", label, encoded or rle.encode(spot)))

    image("co2/S0001_c0", encode(textured(1)), None, "plume")
    image("ch4/S0001_c0", encode(textured(2)), None)
    image("co2/S0002_c0", b"", "zero_byte")
    image("co2/S0003_c0", "text, not an image", "unreadable")
    image("co2/S0004_c0", encode(textured(4), "JPEG")[:120], "truncated")
    image("co2/S0005_c0", huge_png(), "too_large")
    image("co2/S0006_c0", encode(textured(6)[:4, :4]), "too_small")
    image("co2/notes", encode(textured(7)), "unrecognised_name")
    image("co2/S0008_c0", encode(textured(8)), "duplicate_label_conflict", None)
    image("co2/S0008_c1", encode(textured(8)), "duplicate_label_conflict", "plume")
    image("ch4/S0009_c0", encode(textured(2)), "duplicate")
    image("co2/S0010_c0", encode(textured(10)), "rle_malformed", "plume", "3 4 5")
    image("co2/S0011_c0", encode(textured(11)), "rle_out_of_bounds", "plume", "250 10")
    image("co2/S0012_c0", encode(textured(12)), "unknown_label", "smudge")
    annotations.append(("co2/S0013_c0.png", "plume", "1 3"))
    expected["co2/S0013_c0"] = "missing_image"
    link_outside(images, "co2/S0014_c0.png", encode(textured(14)), root.parent)
    expected["co2/S0014_c0"] = "outside_raw_dir"
    table = pd.DataFrame(annotations, columns=["ImageId", "ClassId", "EncodedPixels"])
    table.to_csv(root / "annotations.csv", index=False)
    return root, expected


def test_every_rle_file_ends_in_manifest_or_quarantine(faulty_rle_root, params):
    root, expected = faulty_rle_root
    images, annotations = load_synthetic(root)
    manifest, _, _, quarantine, _ = ingest(images, annotations, {**params, "classes": ["plume"]})
    absent = set(annotations["ImageId"].str.removesuffix(".png")) - set(images)
    assert len(manifest) + len(quarantine) == len(images) + len(absent)
    assert outcome(manifest, quarantine) == expected


@pytest.fixture
def faulty_voc_root(tmp_path_factory):
    """Images anywhere under ``JPEGImages``, ``<stem>.xml`` anywhere under ``Annotations``."""
    root = tmp_path_factory.mktemp("voc")
    expected = {}

    def image(name, content, reason, xml=None):
        write(root / "JPEGImages" / f"{name}.png", content)
        expected[name] = reason
        if xml is not None:
            write(root / "Annotations" / f"{Path(name).stem}.xml", xml)

    image("a/scratch_1", encode(textured(1)), None, voc_xml(("scratch", 1, 1, 4, 4)))
    image("a/clean_2", encode(textured(2)), None, voc_xml())
    image("a/scratch_3", encode(textured(3)), "missing_annotation")
    image("a/scratch_4", encode(textured(4)), "annotation_unreadable", "<annotation><object>")
    entity = '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><annotation>&x;</annotation>'
    image("a/scratch_5", encode(textured(5)), "annotation_unreadable", entity)
    image(
        "a/scratch_6", encode(textured(6)), "box_out_of_bounds", voc_xml(("scratch", 2, 2, 40, 6))
    )
    image("a/scratch_7", encode(textured(7)), "unknown_label", voc_xml(("smudge", 1, 1, 4, 4)))
    image("a/twin_8", encode(textured(8)), "ambiguous_stem", voc_xml(("scratch", 1, 1, 4, 4)))
    image("b/twin_8", encode(textured(9)), "ambiguous_stem")
    image("b/scratch_10", b"", "zero_byte", voc_xml(("scratch", 1, 1, 4, 4)))
    image("b/scratch_11", encode(textured(11)[:4, :4]), "too_small", voc_xml())
    write(root / "Annotations/scratch_12.xml", voc_xml(("scratch", 1, 1, 4, 4)))
    expected["scratch_12"] = "missing_image"
    return root, expected


def test_every_voc_file_ends_in_manifest_or_quarantine(faulty_voc_root, voc_params):
    root, expected = faulty_voc_root
    images, xml_files = load_voc(root)
    manifest, _, _, quarantine, _ = ingest(
        images, xml_files, {**voc_params, "classes": ["scratch"]}
    )
    image_stems = {Path(pid).stem for pid in images}
    xml_without_image = [pid for pid in xml_files if Path(pid).stem not in image_stems]
    assert len(manifest) + len(quarantine) == len(images) + len(xml_without_image)
    assert outcome(manifest, quarantine) == expected


@pytest.fixture
def faulty_manifest_root(tmp_path_factory):
    """A folder of images and masks, and the CSV that lists them."""
    root = tmp_path_factory.mktemp("manifest")
    mask = np.zeros((16, 16), np.uint8)
    mask[2:4, 2:6] = 255
    for name, content in {
        "imgs/a.png": encode(textured(1)),
        "imgs/b.png": encode(textured(2)),
        "imgs/c.png": encode(textured(3)),
        "imgs/d.png": encode(textured(4)),
        "imgs/e.png": encode(textured(5)),
        "masks/a.png": encode(mask),
        "masks/c.png": encode(mask),
        "masks/e.png": encode(mask),
    }.items():
        write(root / name, content)
    rows = [
        ("imgs/a.png", "scratch", "masks/a.png", None),
        ("imgs/b.png", "", None, None),
        ("imgs/c.png", "scratch;dent", "masks/c.png", None),
        ("imgs/d.png", "scratch", "masks/gone.png", None),
        ("imgs/e.png", "", "masks/e.png", "scratch"),
        ("imgs/gone.png", "dent", None, None),
    ]
    table = pd.DataFrame(rows, columns=["path", "labels", "mask_path", "mask_class"])
    expected = {
        "imgs/a": None,
        "imgs/b": None,
        "imgs/c": "mask_ambiguous",
        "imgs/d": "missing_mask",
        "imgs/e": "mask_label_conflict",
        "imgs/gone": "missing_image",
    }
    return root, table, expected


def test_every_manifest_row_ends_in_manifest_or_quarantine(faulty_manifest_root, params):
    root, table, expected = faulty_manifest_root
    settings = {**params, "layout": "manifest_csv"}
    manifest, _, _, quarantine, _ = ingest(partitions(root), table, settings)
    assert len(manifest) + len(quarantine) == len(table)
    assert outcome(manifest, quarantine) == expected


@pytest.fixture
def faulty_folders_root(tmp_path_factory):
    """Class folders, masks in ``masks/``, a labels CSV with several labels per image."""
    root = tmp_path_factory.mktemp("folders")
    expected = {}

    def image(name, content, reason, mask_content=None, mask_name=None):
        write(root / f"{name}.png", content)
        expected[name] = reason
        if mask_content is not None:
            write(root / "masks" / f"{mask_name or name}.png", mask_content)

    image("good/a", encode(grey(1)), None)
    image("OK/b", encode(grey(2)), None)
    image("scratch/c", encode(grey(3)), None, mask())
    image("scratch/d", encode(grey(4)), None, mask(), "scratch/d_mask")
    image("good/e", encode(grey(5)), "mask_label_conflict", mask())
    image("scratch/f", encode(grey(6)), None)  # scratch and dent (CSV)
    image("dent/g", encode(grey(7)), "mask_ambiguous", mask())  # CSV: scratch and rust
    image("scratch/h", b"", "zero_byte")
    image("scratch/i", encode(grey(9)), "mask_size_mismatch", mask(255, 10, 10))
    image("loose", encode(grey(10)), "unrecognised_name")
    image("scratch/j", encode(grey(11)), "duplicate", None)
    write(root / "scratch/j.png", encode(grey(3)))  # the same bytes as scratch/c
    write(root / "masks/scratch/gone.png", mask())
    expected["scratch/gone"] = "missing_image"
    table = pd.DataFrame(
        [("scratch/f.png", "scratch;dent"), ("dent/g.png", "scratch;rust"), ("x/y.png", "dent")],
        columns=["path", "labels"],
    )
    expected["x/y"] = "missing_image"
    return root, table, expected


def test_every_class_folder_image_ends_in_manifest_or_quarantine(faulty_folders_root, params):
    root, table, expected = faulty_folders_root
    settings = {**params, "layout": "folders", "normal_class": ["good", "ok"]}
    manifest, _, _, quarantine, _ = ingest(partitions(root), table, settings)
    assert outcome(manifest, quarantine) == expected
    labels = manifest.set_index("image_id")["labels"]
    assert set(labels["scratch/f"]) == {"scratch", "dent"} and list(labels["OK/b"]) == []


@pytest.fixture
def faulty_mvtec_root(tmp_path_factory):
    """One MVTec AD category: ``train/good``, ``test/<type>``, ``ground_truth``."""
    root = tmp_path_factory.mktemp("mvtec")
    expected = {}

    def image(name, content, reason, mask_content=None):
        write(root / f"{name}.png", content)
        expected[name] = reason
        if mask_content is not None:
            defect, stem = name.split("/")[1:]
            write(root / "ground_truth" / defect / f"{stem}_mask.png", mask_content)

    image("train/good/000", encode(grey(1)), "duplicate")  # the copy kept: first by image id
    image("train/good/001", encode(grey(2)), None)
    image("test/crack/000", encode(grey(3)), None, mask())
    image("test/crack/001", encode(grey(4)), None)  # a defect without its mask: label only
    image("test/crack/002", encode(grey(5), "JPEG")[:200], "truncated", mask())
    image("test/crack/003", encode(grey(6)), "mask_values", mask(60))
    image("test/good/000", encode(grey(1)), None)  # train/good/000 again
    image("notes", encode(grey(8)), "unrecognised_name")
    write(root / "ground_truth/crack/009_mask.png", mask())
    expected["test/crack/009"] = "missing_image"
    return root, expected


def test_every_mvtec_image_ends_in_manifest_or_quarantine(faulty_mvtec_root, params):
    root, expected = faulty_mvtec_root
    settings = {**params, "layout": "mvtec", "normal_class": "good"}
    images, masks = partitions(root), partitions(root / "ground_truth")
    manifest, _, _, quarantine, _ = ingest(images, masks, settings)
    assert outcome(manifest, quarantine) == expected
    assert manifest.set_index("image_id")["mvtec_split"]["train/good/001"] == "train"


def documented_reasons() -> set[str]:
    """Every code in the quarantine table of docs/data.md."""
    text = (PROJECT_ROOT / "docs/data.md").read_text()
    table = text[text.index("| `zero_byte`") :].split("\n\n")[0]
    return {
        code
        for line in table.splitlines()
        for code in re.findall(r"`([a-z_]+)`", line.split("|")[1])
    }


def test_the_matrices_raise_every_documented_reason(
    faulty_root,
    faulty_rle_root,
    faulty_voc_root,
    faulty_manifest_root,
    faulty_folders_root,
    faulty_mvtec_root,
):
    raised = {
        reason
        for expected in (
            faulty_root[1],
            faulty_rle_root[1],
            faulty_voc_root[1],
            faulty_manifest_root[2],
            faulty_folders_root[2],
            faulty_mvtec_root[1],
        )
        for reason in expected.values()
    }
    assert documented_reasons() - raised == set()
    assert raised - {None} <= documented_reasons()
