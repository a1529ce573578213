import numpy as np
import pandas as pd
import pytest

from anomaly_lens.ml.data.splitting import (
    LeakageError,
    assert_no_leakage,
    assign_splits,
    merge_groups_sharing_content,
    missing_classes,
    share_deviation,
)


def grouped_data(n_groups=60, per_group=4, seed=0):
    """Samples in groups; labels correlate within a group, as with one specimen."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"g{i}" for i in range(n_groups)], per_group)
    group_class = rng.integers(0, 3, n_groups).repeat(per_group)
    labels = np.zeros((len(groups), 3), dtype=int)
    labels[np.arange(len(groups)), group_class] = rng.random(len(groups)) < 0.7
    return pd.Series(groups), labels


def test_groups_never_cross_splits_where_a_naive_split_would_leak():
    groups, labels = grouped_data()
    # A naive sample-level split puts samples of one group in several splits:
    naive = pd.DataFrame(
        {"group": groups, "split": np.resize(["train", "val", "test"], len(groups))}
    )
    with pytest.raises(LeakageError):
        assert_no_leakage(naive, "group")
    result = assign_splits(groups, labels, (0.7, 0.15, 0.15), seed=1).assign(group=groups)
    assert_no_leakage(result, "group")
    shares = result["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.08)
    assert shares["test"] == pytest.approx(0.15, abs=0.06)


def test_groups_sharing_content_are_joined_before_splitting():
    groups = pd.Series(["a", "b", "c", "d"])
    hashes = pd.Series([["h1"], ["h2", "h1"], ["h3"], ["h4", "h3"]])
    units = merge_groups_sharing_content(groups, hashes)
    assert units[0] == units[1] and units[2] == units[3] and units[0] != units[2]
    joined = merge_groups_sharing_content(groups, hashes, near_duplicates=[(1, 3)])
    assert joined.nunique() == 1


def test_hash_leakage_is_detected():
    frame = pd.DataFrame({"hashes": [["x", "y"], ["y"]], "split": ["train", "test"]})
    with pytest.raises(LeakageError, match="hashes"):
        assert_no_leakage(frame, "hashes")
    assert_no_leakage(frame.assign(split=["train", "train"]), "hashes")


def test_same_seed_same_split_and_more_candidates_never_worse():
    groups, labels = grouped_data(seed=3)
    one = assign_splits(groups, labels, (0.7, 0.15, 0.15), seed=5, candidates=1)
    again = assign_splits(groups, labels, (0.7, 0.15, 0.15), seed=5, candidates=1)
    many = assign_splits(groups, labels, (0.7, 0.15, 0.15), seed=5, candidates=20)
    assert one.equals(again)
    matrix = np.column_stack([labels, labels.sum(1) == 0])
    assert share_deviation(matrix, many["split"].to_numpy()) <= share_deviation(
        matrix, one["split"].to_numpy()
    )


def test_80_10_10_ratios():
    groups, labels = grouped_data(n_groups=100)
    shares = assign_splits(groups, labels, (0.8, 0.1, 0.1), seed=0)["split"].value_counts(
        normalize=True
    )
    assert shares["train"] == pytest.approx(0.8, abs=0.06)


@pytest.mark.parametrize("ratios", [(0.7, 0.2, 0.2), (1.0, 0.0, 0.0), (0.5, 0.5)])
def test_bad_ratios_are_rejected(ratios):
    groups, labels = grouped_data(n_groups=10)
    with pytest.raises(ValueError, match="three shares summing to 1"):
        assign_splits(groups, labels, ratios, seed=0)


def test_missing_class_warnings_name_the_class():
    frame = pd.DataFrame({"split": ["train", "train", "val", "test"], "label_rare": [1, 1, 0, 0]})
    units = pd.Series(["g1", "g1", "g2", "g3"])
    warnings = missing_classes(frame, ["rare"], units)
    assert warnings == [
        "class 'rare' is missing from val: only 1 group(s) carry it",
        "class 'rare' is missing from test: only 1 group(s) carry it",
    ]
