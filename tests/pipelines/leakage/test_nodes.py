"""The leakage report compares like with like and states the gap."""

from __future__ import annotations

import pytest

from anomaly_lens.pipelines.leakage.nodes import random_grouping, report_leakage


def cv_metrics(group_by: str, network: float, baseline: float) -> dict:
    def part(f1):
        return {"oof": {"macro_f1": f1, "macro_f1_ci95": [f1 - 0.1, f1 + 0.1]}}

    return {
        "folds": 5,
        "group_by": group_by,
        "validation": "next_fold",
        "items": 100,
        "units": 40 if group_by == "unit" else 100,
        "classes": ["normal", "crack"],
        "model": {"backbone": "tf_efficientnet_lite0", "pretrained": True, "task": "x"},
        "image_size": 224,
        "per_view": True,
        "train": {"seed": 42, "tta": "d4", "augmentation": {"rotate90": True, "preset": "light"}},
        **part(network),
        "baseline": {"model": "logistic regression", **part(baseline)},
    }


def test_gap_is_random_minus_grouped():
    report = report_leakage(cv_metrics("unit", 0.6, 0.5), cv_metrics("none", 0.9, 0.85))
    assert report["grouped_macro_f1"] == 0.6 and report["random_macro_f1"] == 0.9
    assert report["gap"] == pytest.approx(0.3)
    assert report["baseline"]["gap"] == pytest.approx(0.35)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("image_size", 128),
        ("validation", "none"),  # folds trained on the next fold instead of early-stopped
    ],
)
def test_runs_with_other_parameters_are_not_compared(key, value):
    leaky = {**cv_metrics("none", 0.9, 0.85), key: value}
    with pytest.raises(ValueError, match=rf"differ in \['{key}'\]"):
        report_leakage(cv_metrics("unit", 0.6, 0.5), leaky)


def test_runs_trained_or_read_otherwise_are_not_compared():
    """A leaky run trained without the quarter turns of the grouped one, or a grouped
    report that did not record its settings (an earlier version), is refused."""
    grouped = cv_metrics("unit", 0.6, 0.5)
    leaky = cv_metrics("none", 0.9, 0.85)
    leaky["train"] = {**leaky["train"], "augmentation": {"rotate90": False, "preset": "light"}}
    with pytest.raises(ValueError, match=r"differ in \['train.augmentation.rotate90'\]"):
        report_leakage(grouped, leaky)
    unrecorded = {k: v for k, v in grouped.items() if k != "train"}
    with pytest.raises(ValueError, match=r"differ in \['train'\]"):
        report_leakage(unrecorded, cv_metrics("none", 0.9, 0.85))


def test_random_grouping_changes_only_the_grouping():
    cv = {"folds": 5, "group_by": "unit", "seed": 1, "candidates": 3}
    leaky = random_grouping(cv)
    assert leaky["group_by"] == "none" and cv["group_by"] == "unit"
    assert {k: leaky[k] for k in ("folds", "seed", "candidates")} == {
        "folds": 5,
        "seed": 1,
        "candidates": 3,
    }
