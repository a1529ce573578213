import pandas as pd
import pytest

from anomaly_lens.pipelines.pairing.nodes import key_samples, pair_samples, summarise_pairing

SYNTHETIC = {
    "key": ["specimen_id", "condition"],
    "group": "specimen_id",
    "views": ["co2", "ch4"],
    "keep": [],
    "tiles": None,
}
TILES = {
    "key": ["tile_id"],
    "group": "tile_id",
    "views": [f"exp{k}" for k in range(1, 7)],
    "keep": ["class_folder"],
    "tiles": {"folder": "class_folder", "number": "num", "max_gap": 300},
}


def synthetic_manifest():
    rows = [
        ("co2/S1_c0", "co2", "S1", "c0", ["plume"]),
        ("ch4/S1_c0", "ch4", "S1", "c0", []),
        ("co2/S1_c1", "co2", "S1", "c1", []),
        ("ch4/S2_c0", "ch4", "S2", "c0", ["hotspot"]),
    ]
    return pd.DataFrame(rows, columns=["image_id", "view", "specimen_id", "condition", "labels"])


def test_synthetic_samples_are_keyed_by_specimen_and_condition():
    samples, conflicts = pair_samples(
        key_samples(synthetic_manifest(), SYNTHETIC), ["hotspot", "plume"], SYNTHETIC
    )
    assert samples["sample_id"].tolist() == ["S1|c0", "S1|c1", "S2|c0"]
    assert samples["group_id"].tolist() == ["S1", "S1", "S2"]
    assert samples["view_mask"].tolist() == [[1, 1], [1, 0], [0, 1]]
    assert conflicts["sample_id"].tolist() == ["S1|c0"]
    report = summarise_pairing(samples, conflicts, SYNTHETIC)
    assert (report["complete_samples"], report["partial_samples"]) == (1, 2)
    assert report["missing_by_view"] == {"co2": 1, "ch4": 1}
    assert report["samples_by_class"] == {"hotspot": 1, "plume": 1}
    assert report["label_conflicts_by_class"] == {"plume": 1}


def test_magnetic_tile_images_are_paired_into_tiles():
    names = ["exp1_num_20362", "exp2_num_20390", "exp3_num_20421", "exp0_num_797", "exp1_num_77531"]
    manifest = pd.DataFrame(
        {
            "image_id": [f"MT_Fray/Imgs/{n}" for n in names],
            "view": [n.split("_")[0] for n in names],
            "num": [n.split("_")[2] for n in names],
            "class_folder": "Fray",
            "labels": [["Fray"]] * 5,
        }
    )
    samples, _ = pair_samples(key_samples(manifest, TILES), ["Fray"], TILES)
    by_id = samples.set_index("sample_id")
    assert by_id.loc["Fray/20362", "n_views"] == 3 and by_id.loc["Fray/77531", "n_views"] == 1
    leftover = by_id.loc["MT_Fray/Imgs/exp0_num_797"]
    assert leftover.image_exp0 == "MT_Fray/Imgs/exp0_num_797" and not leftover.in_sequence
    report = summarise_pairing(samples, pd.DataFrame(columns=["class"]), TILES)
    assert (
        report["extra_views"] == ["exp0"] and report["single_image_samples_outside_sequences"] == 1
    )


def test_missing_key_column_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\['condition'\]"):
        key_samples(synthetic_manifest().drop(columns="condition"), SYNTHETIC)


SINGLE_VIEW = {"key": ["image_id"], "group": ["group", "image_id"], "views": ["default"]}


def single_view_manifest(**columns):
    frame = pd.DataFrame(
        {"image_id": ["part1_a", "part1_b", "part2_a"], "view": "default", "labels": [[], [], []]}
    )
    return frame.assign(**columns)


def test_single_view_group_comes_from_a_group_field_when_there_is_one():
    keyed = key_samples(single_view_manifest(group=["part1", "part1", "part2"]), SINGLE_VIEW)
    samples, _ = pair_samples(keyed, [], SINGLE_VIEW)
    assert samples["sample_id"].tolist() == ["part1_a", "part1_b", "part2_a"]
    assert samples["group_id"].tolist() == ["part1", "part1", "part2"]
    assert "image_id" not in samples.columns  # the image is in image_default


def test_single_view_group_is_the_image_without_a_group_field():
    samples, _ = pair_samples(key_samples(single_view_manifest(), SINGLE_VIEW), [], SINGLE_VIEW)
    assert samples["group_id"].tolist() == ["part1_a", "part1_b", "part2_a"]
    assert samples["image_default"].tolist() == samples["sample_id"].tolist()


def test_a_group_column_that_is_nowhere_is_an_error():
    with pytest.raises(ValueError, match=r"none of the columns \['lot'\]"):
        key_samples(single_view_manifest(), {**SINGLE_VIEW, "group": "lot"})
