import pandas as pd
import pytest

from anomaly_lens.ml.data.pairing import pair_views, recover_tiles


def captures(*names: str, folder: str = "Fray") -> pd.DataFrame:
    rows = [(folder, n.split("_")[0], n.split("_")[2]) for n in names]
    return pd.DataFrame(rows, columns=["class_folder", "view", "num"])


def tiles_of(frame, max_gap=300):
    return recover_tiles(frame, "class_folder", "view", "num", max_gap).tolist()


def test_hand_checked_fray_tiles_from_the_dataset():
    # One tile with six views, then one with exp3 missing (Magnetic Tile, MT_Fray).
    frame = captures(
        "exp1_num_20362",
        "exp2_num_20390",
        "exp3_num_20421",
        "exp4_num_20450",
        "exp5_num_20472",
        "exp6_num_20496",
        "exp1_num_77531",
        "exp2_num_77559",
        "exp4_num_77613",
        "exp5_num_77692",
        "exp6_num_77744",
    )
    assert tiles_of(frame) == ["Fray/20362"] * 6 + ["Fray/77531"] * 5


def test_a_view_index_that_does_not_increase_starts_a_new_tile():
    frame = captures("exp1_num_10", "exp2_num_20", "exp2_num_30", "exp3_num_40")
    assert tiles_of(frame) == ["Fray/10", "Fray/10", "Fray/30", "Fray/30"]


def test_a_gap_above_the_limit_starts_a_new_tile():
    frame = captures("exp1_num_100", "exp2_num_150", "exp3_num_151")
    assert tiles_of(frame, max_gap=40) == ["Fray/100", "Fray/150", "Fray/150"]
    assert tiles_of(frame, max_gap=50) == ["Fray/100"] * 3


def test_tiles_never_span_folders_and_input_order_does_not_matter():
    frame = pd.concat(
        [captures("exp2_num_12", "exp1_num_11"), captures("exp3_num_13", folder="Crack")]
    )
    assert tiles_of(frame.reset_index(drop=True)) == ["Fray/11", "Fray/11", "Crack/13"]


def test_exp0_is_left_out_of_sequences():
    tiles = recover_tiles(
        captures("exp0_num_797", "exp1_num_800"), "class_folder", "view", "num", 300
    )
    assert pd.isna(tiles[0]) and tiles[1] == "Fray/800"


def manifest(*rows):
    return pd.DataFrame(rows, columns=["image_id", "view", "labels", "specimen_id"])


def test_pairing_keeps_missing_views_and_resolves_conflicts_by_union():
    frame = manifest(
        ("co2/a", "co2", ["plume"], "S1"),
        ("ch4/a", "ch4", ["hotspot"], "S1"),
        ("co2/b", "co2", [], "S2"),  # ch4 missing
    )
    samples, conflicts = pair_views(
        frame,
        pd.Series(["a", "a", "b"]),
        frame["specimen_id"],
        ["co2", "ch4"],
        ["hotspot", "plume"],
        keep_columns=["specimen_id"],
    )
    a, b = samples.set_index("sample_id").loc["a"], samples.set_index("sample_id").loc["b"]
    assert a.labels == ["hotspot", "plume"] and (a.label_hotspot, a.label_plume) == (1, 1)
    assert a.view_mask == [1, 1] and a.complete and a.image_ch4 == "ch4/a"
    assert b.view_mask == [1, 0] and not b.complete and pd.isna(b.image_ch4) and b.n_views == 1
    assert b.specimen_id == "S2" and b.group_id == "S2"
    assert conflicts[["sample_id", "class", "views_with", "views_without"]].values.tolist() == [
        ["a", "hotspot", ["ch4"], ["co2"]],
        ["a", "plume", ["co2"], ["ch4"]],
    ]


def test_unexpected_views_become_extra_columns_not_dropped_rows():
    frame = manifest(("x", "exp0", ["Crack"], "t1"), ("y", "exp1", ["Crack"], "t2"))
    samples, _ = pair_views(frame, pd.Series(["x", "y"]), frame["specimen_id"], ["exp1"], ["Crack"])
    assert list(samples.filter(like="image_").columns) == ["image_exp1", "image_exp0"]
    assert samples["view_mask"].tolist() == [[0, 1], [1, 0]]
    assert samples["complete"].tolist() == [False, True]


def test_two_images_for_one_sample_and_view_is_an_error():
    frame = manifest(("p", "co2", [], "S1"), ("q", "co2", [], "S1"))
    with pytest.raises(ValueError, match="share a sample and view"):
        pair_views(frame, pd.Series(["s", "s"]), frame["specimen_id"], ["co2"], [])
