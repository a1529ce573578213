"""A class-folder raw layer with every bad case the layout can hold, beside good files:
each image ends in the manifest or in quarantine with its reason; none is lost."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from .conftest import encode, textured, write
from .test_nodes import class_folder_params, ingest, load_folders  # noqa: F401 (fixture)


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


def test_every_file_ends_in_manifest_or_quarantine(faulty_root, class_folder_params):  # noqa: F811
    root, expected = faulty_root
    manifest, _, _, quarantine, _ = ingest(*load_folders(root), class_folder_params)
    images = len(list(root.rglob("*.jpg")))
    masks_without_image = sum(not p.with_suffix(".jpg").exists() for p in root.rglob("*.png"))
    assert len(manifest) + len(quarantine) == images + masks_without_image
    found = dict(zip(quarantine["image_id"], quarantine["reason"], strict=True))
    found |= dict.fromkeys(manifest["image_id"])
    assert found == expected
