"""Ingestion nodes on tiny crafted inputs; one test per kind of bad input."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from anomaly_lens.pipelines.ingestion.nodes import (
    DataQualityError,
    collect_records,
    plot_quality,
    summarise_quality,
)

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


def reasons(quarantine: pd.DataFrame) -> dict[str, str]:
    return dict(zip(quarantine["image_id"], quarantine["reason"], strict=True))


# ------------------------------------------------------------------ good input


def test_good_synthetic_input_fills_the_manifest(synthetic_root, params):
    manifest, masks, boxes, quarantine, classes = ingest(*load_synthetic(synthetic_root), params)
    assert quarantine.empty and boxes.empty
    assert classes == ["plume"]
    assert len(manifest) == 4
    row = manifest.set_index("image_id").loc["co2/S0001_c0"]
    assert (row.view, row.specimen_id, row.condition) == ("co2", "S0001", "c0")
    assert (row.width, row.height, row["mode"]) == (16, 16, "L")
    assert list(row.labels) == ["plume"] and row.has_mask_plume and row.mask_area_plume == 16
    assert row.path.endswith("images/co2/S0001_c0.png")
    assert len(row.sha256) == 64 and row.sharpness > 0 and row.resolution == 256
    assert masks[["image_id", "class", "area", "weak_mask"]].values.tolist() == [
        ["co2/S0001_c0", "plume", 16, False]
    ]


# ------------------------------------------------------------------ bad image files


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "zero_byte"),
        (b"not an image at all", "unreadable"),
        (encode(textured(99, 64))[:200], "truncated"),
    ],
)
def test_broken_image_file_is_quarantined(synthetic_root, params, content, reason):
    write(synthetic_root / "images" / "ch4" / "S0002_c0.png", content)
    manifest, _, _, quarantine, _ = ingest(*load_synthetic(synthetic_root), params)
    assert reasons(quarantine) == {"ch4/S0002_c0": reason}
    assert len(manifest) == 3  # the run goes on with the good rows
    assert quarantine["path"].iloc[0].endswith("ch4/S0002_c0.png")


def test_file_name_outside_the_pattern_is_quarantined(synthetic_root, params):
    write(synthetic_root / "images" / "co2" / "holiday_photo.png", encode(textured(5)))
    _, _, _, quarantine, _ = ingest(*load_synthetic(synthetic_root), params)
    assert reasons(quarantine) == {"co2/holiday_photo": "unrecognised_name"}


def test_exact_duplicate_keeps_the_first_and_names_it(synthetic_root, params):
    original = (synthetic_root / "images" / "ch4" / "S0001_c0.png").read_bytes()
    write(synthetic_root / "images" / "ch4" / "S0003_c0.png", original)
    manifest, _, _, quarantine, _ = ingest(*load_synthetic(synthetic_root), params)
    row = quarantine.iloc[0]
    assert (row.image_id, row.reason, row.duplicate_of) == (
        "ch4/S0003_c0",
        "duplicate",
        "ch4/S0001_c0",
    )
    assert "ch4/S0001_c0" in set(manifest["image_id"])


def test_copies_with_other_labels_are_all_quarantined(synthetic_root, params):
    """The same picture as a plume image and, unannotated, as a normal one: which label is
    right cannot be told, so neither copy is kept (file order must not decide)."""
    original = (synthetic_root / "images" / "co2" / "S0001_c0.png").read_bytes()
    write(synthetic_root / "images" / "co2" / "S0003_c0.png", original)
    manifest, _, _, quarantine, _ = ingest(*load_synthetic(synthetic_root), params)
    conflict = quarantine[quarantine["reason"] == "duplicate_label_conflict"]
    assert sorted(conflict["image_id"]) == ["co2/S0001_c0", "co2/S0003_c0"]
    assert "co2/S0001_c0: plume vs co2/S0003_c0: (normal)" in conflict["detail"].iloc[0]
    assert not {"co2/S0001_c0", "co2/S0003_c0"} & set(manifest["image_id"])

    keep_first = {**params, "duplicate_label_conflict": "keep_first"}
    manifest, _, _, quarantine, _ = ingest(*load_synthetic(synthetic_root), keep_first)
    assert "co2/S0001_c0" in set(manifest["image_id"])
    assert quarantine.set_index("image_id").loc["co2/S0003_c0", "duplicate_of"] == "co2/S0001_c0"


def test_huge_and_tiny_images_are_quarantined_before_decoding(synthetic_root, params):
    bomb = io.BytesIO()
    Image.new("L", (20000, 20000)).save(bomb, format="PNG")  # 400 MP in a few hundred KB
    write(synthetic_root / "images" / "co2" / "S0003_c0.png", bomb.getvalue())
    write(synthetic_root / "images" / "co2" / "S0004_c0.png", encode(textured(5, size=1)))
    manifest, _, _, quarantine, _ = ingest(*load_synthetic(synthetic_root), params)
    reasons = quarantine.set_index("image_id")["reason"]
    assert reasons["co2/S0003_c0"] == "too_large" and reasons["co2/S0004_c0"] == "too_small"
    assert len(manifest) == 4  # the good images are all kept
    detail = quarantine.set_index("image_id").loc["co2/S0003_c0", "detail"]
    assert detail == "400000000 pixels > 40000000"  # the configured limit, not the decoder's


def test_a_huge_mask_is_quarantined(class_folder_root, class_folder_params):
    bomb = io.BytesIO()
    Image.new("L", (20000, 20000)).save(bomb, format="PNG")
    write(class_folder_root / "MT_Crack/Imgs/exp1_num_10.png", bomb.getvalue())
    _, _, _, quarantine, _ = ingest(*load_folders(class_folder_root), class_folder_params)
    assert quarantine.set_index("image_id").loc["MT_Crack/Imgs/exp1_num_10", "reason"] == (
        "mask_too_large"
    )


def test_links_out_of_the_raw_folder_are_not_read(synthetic_root, params, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.png"
    outside.write_bytes(encode(textured(7)))
    (synthetic_root / "images" / "co2" / "S0003_c0.png").symlink_to(outside)
    inside = synthetic_root / "images" / "ch4" / "S0003_c0.png"
    inside.symlink_to(synthetic_root / "images" / "ch4" / "S0002_c0.png")  # stays inside
    manifest, _, _, quarantine, _ = ingest(*load_synthetic(synthetic_root), params)
    reasons = quarantine.set_index("image_id")["reason"]
    assert reasons["co2/S0003_c0"] == "outside_raw_dir"
    assert reasons["ch4/S0003_c0"] == "duplicate"  # read: a link inside the folder is fine
    allowed = {**params, "follow_links_outside_raw_dir": True}
    manifest, _, _, quarantine, _ = ingest(*load_synthetic(synthetic_root), allowed)
    assert "co2/S0003_c0" in set(manifest["image_id"])


# ------------------------------------------------------------------ bad annotations


def add_annotation(root, image_id, cls, encoded):
    table = pd.read_csv(root / "annotations.csv")
    table.loc[len(table)] = [image_id, cls, encoded]
    table.to_csv(root / "annotations.csv", index=False)


def test_rle_run_outside_the_image_is_quarantined(synthetic_root, params):
    add_annotation(synthetic_root, "ch4/S0002_c0.png", "plume", "250 10")  # 16x16 = 256 pixels
    _, _, _, quarantine, _ = ingest(*load_synthetic(synthetic_root), params)
    assert reasons(quarantine) == {"ch4/S0002_c0": "rle_out_of_bounds"}


def test_malformed_rle_is_quarantined(synthetic_root, params):
    add_annotation(synthetic_root, "ch4/S0002_c0.png", "plume", "3 4 5")
    _, _, _, quarantine, _ = ingest(*load_synthetic(synthetic_root), params)
    assert reasons(quarantine) == {"ch4/S0002_c0": "rle_malformed"}


def test_annotation_without_image_is_quarantined(synthetic_root, params):
    add_annotation(synthetic_root, "co2/S0009_c0.png", "plume", "1 3")
    _, _, _, quarantine, _ = ingest(*load_synthetic(synthetic_root), params)
    assert reasons(quarantine) == {"co2/S0009_c0": "missing_image"}


def test_label_outside_the_class_list_is_quarantined(synthetic_root, params):
    add_annotation(synthetic_root, "ch4/S0002_c0.png", "smudge", "1 3")
    params["classes"] = ["plume"]
    _, _, _, quarantine, classes = ingest(*load_synthetic(synthetic_root), params)
    assert reasons(quarantine) == {"ch4/S0002_c0": "unknown_label"}
    assert classes == ["plume"]


def test_empty_class_list_takes_the_classes_found(synthetic_root, params):
    add_annotation(synthetic_root, "ch4/S0002_c0.png", "smudge", "1 3")
    manifest, _, _, quarantine, classes = ingest(*load_synthetic(synthetic_root), params)
    assert quarantine.empty and classes == ["plume", "smudge"]
    assert "has_mask_smudge" in manifest.columns


# ------------------------------------------------------------------ error policy


def test_on_error_fail_stops_before_writing_and_names_the_reasons(synthetic_root, params):
    write(synthetic_root / "images" / "ch4" / "S0002_c0.png", b"")
    params["on_error"] = "fail"
    with pytest.raises(DataQualityError, match=r"zero_byte"):
        ingest(*load_synthetic(synthetic_root), params)


def test_unknown_layout_is_a_clear_error(synthetic_root, params):
    params["layout"] = "tiff_stack"
    with pytest.raises(ValueError, match="ingestion.layout: expected one of .* got .tiff_stack."):
        collect_records(*load_synthetic(synthetic_root), params)


# ------------------------------------------------------------------ class-folder layout


@pytest.fixture
def class_folder_root(tmp_path):
    """Magnetic-Tile-like folders: MT_<Class>/Imgs/<stem>.jpg with <stem>.png masks."""
    defect = np.zeros((20, 30), dtype=np.uint8)
    defect[5:10, 5:15] = 255
    defect[5, 4] = 90  # a soft edge pixel, as in the real masks
    write(tmp_path / "MT_Crack/Imgs/exp1_num_10.jpg", encode(textured(1, 30)[:20], "JPEG"))
    write(tmp_path / "MT_Crack/Imgs/exp1_num_10.png", encode(defect))
    write(tmp_path / "MT_Free/Imgs/exp2_num_11.jpg", encode(textured(2, 30)[:20], "JPEG"))
    write(tmp_path / "MT_Free/Imgs/exp2_num_11.png", encode(np.zeros((20, 30), np.uint8)))
    return tmp_path


def test_class_folders_give_labels_views_and_masks(class_folder_root, class_folder_params):
    manifest, masks, _, quarantine, classes = ingest(
        *load_folders(class_folder_root), class_folder_params
    )
    assert quarantine.empty and classes == ["Crack"]
    by_id = manifest.set_index("image_id")
    crack = by_id.loc["MT_Crack/Imgs/exp1_num_10"]
    assert list(crack.labels) == ["Crack"] and crack.view == "exp1" and crack.num == "10"
    assert crack.mask_area_Crack == 50  # 5x10 core; the soft edge pixel (90) is background
    assert list(by_id.loc["MT_Free/Imgs/exp2_num_11"].labels) == []
    assert masks["class"].tolist() == ["Crack"]


def test_mask_of_another_size_is_quarantined(class_folder_root, class_folder_params):
    write(class_folder_root / "MT_Crack/Imgs/exp1_num_10.png", encode(np.zeros((10, 10), np.uint8)))
    _, _, _, quarantine, _ = ingest(*load_folders(class_folder_root), class_folder_params)
    assert reasons(quarantine) == {"MT_Crack/Imgs/exp1_num_10": "mask_size_mismatch"}


def test_mask_without_foreground_at_the_threshold_is_quarantined(
    class_folder_root, class_folder_params
):
    faint = np.zeros((20, 30), np.uint8)
    faint[3:6, 3:6] = 60
    write(class_folder_root / "MT_Crack/Imgs/exp1_num_10.png", encode(faint))
    _, _, _, quarantine, _ = ingest(*load_folders(class_folder_root), class_folder_params)
    assert reasons(quarantine) == {"MT_Crack/Imgs/exp1_num_10": "mask_values"}


def test_strict_masks_reject_soft_edges(class_folder_root, class_folder_params):
    class_folder_params["strict_binary_masks"] = True
    _, _, _, quarantine, _ = ingest(*load_folders(class_folder_root), class_folder_params)
    assert reasons(quarantine) == {"MT_Crack/Imgs/exp1_num_10": "mask_values"}


def test_defect_pixels_on_a_normal_image_are_quarantined(class_folder_root, class_folder_params):
    spot = np.zeros((20, 30), np.uint8)
    spot[1:3, 1:3] = 255
    write(class_folder_root / "MT_Free/Imgs/exp2_num_11.png", encode(spot))
    _, _, _, quarantine, _ = ingest(*load_folders(class_folder_root), class_folder_params)
    assert reasons(quarantine) == {"MT_Free/Imgs/exp2_num_11": "mask_label_conflict"}


def test_mask_without_image_is_quarantined(class_folder_root, class_folder_params):
    write(class_folder_root / "MT_Crack/Imgs/exp3_num_12.png", encode(np.zeros((20, 30), np.uint8)))
    _, _, _, quarantine, _ = ingest(*load_folders(class_folder_root), class_folder_params)
    assert reasons(quarantine) == {"MT_Crack/Imgs/exp3_num_12": "missing_image"}


# ------------------------------------------------------------------ Pascal VOC layout


@pytest.fixture
def voc_root(tmp_path):
    write(tmp_path / "JPEGImages/batch1/scratch_1.png", encode(textured(1)))
    write(tmp_path / "JPEGImages/batch2/dent_2.png", encode(textured(2)))
    write(
        tmp_path / "Annotations/scratch_1.xml",
        voc_xml(("scratch", 1, 1, 4, 4), ("dent", 8, 8, 16, 16)),
    )
    write(tmp_path / "Annotations/nested/dent_2.xml", voc_xml(("dent", 2, 2, 6, 6)))
    return tmp_path


def test_voc_boxes_become_labels_and_weak_masks(voc_root, voc_params):
    manifest, masks, boxes, quarantine, classes = ingest(*load_voc(voc_root), voc_params)
    assert quarantine.empty and classes == ["dent", "scratch"]
    labels = dict(zip(manifest["image_id"], manifest["labels"].map(list), strict=True))
    assert labels == {"batch1/scratch_1": ["dent", "scratch"], "batch2/dent_2": ["dent"]}
    first = boxes[boxes["image_id"] == "batch1/scratch_1"].sort_values("class")
    assert first[["class", "x0", "y0", "x1", "y1"]].values.tolist() == [
        ["dent", 7, 7, 16, 16],
        ["scratch", 0, 0, 4, 4],
    ]
    assert masks["weak_mask"].all()
    assert set(masks.query("image_id == 'batch1/scratch_1'")["area"]) == {16, 81}


def test_voc_labels_from_file_name_prefix(voc_root, voc_params):
    voc_params["voc"]["label_source"] = "filename_prefix"
    manifest, *_ = ingest(*load_voc(voc_root), voc_params)
    labels = dict(zip(manifest["image_id"], manifest["labels"].map(list), strict=True))
    assert labels == {"batch1/scratch_1": ["scratch"], "batch2/dent_2": ["dent"]}


def test_voc_box_outside_the_image_is_quarantined(voc_root, voc_params):
    write(voc_root / "Annotations/nested/dent_2.xml", voc_xml(("dent", 2, 2, 40, 6)))
    _, _, _, quarantine, _ = ingest(*load_voc(voc_root), voc_params)
    assert reasons(quarantine) == {"batch2/dent_2": "box_out_of_bounds"}


def test_voc_image_without_xml_is_quarantined(voc_root, voc_params):
    write(voc_root / "JPEGImages/crack_3.png", encode(textured(3)))
    _, _, _, quarantine, _ = ingest(*load_voc(voc_root), voc_params)
    assert reasons(quarantine) == {"crack_3": "missing_annotation"}


def test_voc_xml_without_image_is_quarantined(voc_root, voc_params):
    write(voc_root / "Annotations/crack_4.xml", voc_xml(("crack", 1, 1, 2, 2)))
    _, _, _, quarantine, _ = ingest(*load_voc(voc_root), voc_params)
    assert reasons(quarantine) == {"crack_4": "missing_image"}


def test_voc_unparsable_xml_is_quarantined(voc_root, voc_params):
    write(voc_root / "Annotations/nested/dent_2.xml", "<annotation><object>")
    _, _, _, quarantine, _ = ingest(*load_voc(voc_root), voc_params)
    assert reasons(quarantine) == {"batch2/dent_2": "annotation_unreadable"}


# ------------------------------------------------------------------ manifest CSV layout


def test_manifest_csv_with_masks_and_a_missing_file(tmp_path, params):
    mask = np.zeros((16, 16), np.uint8)
    mask[2:4, 2:6] = 255
    write(tmp_path / "imgs/a.png", encode(textured(1)))
    write(tmp_path / "imgs/b.png", encode(textured(2)))
    write(tmp_path / "masks/a.png", encode(mask))
    table = pd.DataFrame(
        {
            "path": ["imgs/a.png", "imgs/b.png", "imgs/gone.png"],
            "labels": ["scratch", "", "scratch;dent"],
            "mask_path": ["masks/a.png", None, None],
            "lot": ["L1", "L1", "L2"],
        }
    )
    params = {**params, "layout": "manifest_csv"}
    manifest, masks, _, quarantine, _ = ingest(partitions(tmp_path), table, params)
    assert reasons(quarantine) == {"imgs/gone": "missing_image"}
    a = manifest.set_index("image_id").loc["imgs/a"]
    assert a.lot == "L1" and list(a.labels) == ["scratch"] and a.mask_area_scratch == 8


# ------------------------------------------------------------------ report


def test_quality_report_counts_reasons_classes_and_views(synthetic_root, params):
    write(synthetic_root / "images" / "ch4" / "S0002_c0.png", b"")
    manifest, _, _, quarantine, classes = ingest(*load_synthetic(synthetic_root), params)
    report = summarise_quality(manifest, quarantine, classes, params)
    assert report["n_images"] == 3 and report["n_quarantined"] == 1
    assert report["quarantine_by_reason"] == {"zero_byte": 1}
    assert report["images_by_view"] == {"ch4": 1, "co2": 2}
    assert report["labels_by_class_and_view"] == {"plume": {"co2": 1}}
    assert report["classes_from"] == "data" and report["normal_images"] == 2
    assert set(report["quality_quantiles_by_view"]["sharpness"]) == {"co2", "ch4"}
    assert isinstance(plot_quality(manifest, quarantine), Figure)


def test_quality_report_says_what_reading_grey_squares_changes(synthetic_root, params):
    wide_colour = np.random.default_rng(0).integers(0, 255, (16, 48, 3), dtype=np.uint8)
    write(synthetic_root / "images" / "ch4" / "S0002_c0.png", encode(wide_colour))
    manifest, _, _, quarantine, classes = ingest(*load_synthetic(synthetic_root), params)
    geometry = summarise_quality(manifest, quarantine, classes, params)["geometry"]
    assert geometry["colour_images_read_as_luminance"] == 1
    assert geometry["images_beyond_3_to_2"] == 1 and geometry["aspect_ratio_q50_q95_max"][2] == 3
    assert geometry["long_side_q5_q50_q95"][0] == 16 < geometry["long_side_q5_q50_q95"][2]
