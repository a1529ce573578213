"""The paired comparison of two cross-validation runs on the same folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anomaly_lens.ml.evaluation.crossval import paired_difference

CLASSES = ["normal", "crack", "dent"]


def predictions(called: list[int], truth: list[int]) -> pd.DataFrame:
    """A cv_predictions table: photo k of unit k // 2, fold (k // 2) % 2, called
    ``called[k]`` with probability 0.8."""
    n = len(truth)
    probs = np.full((n, len(CLASSES)), 0.1)
    probs[np.arange(n), called] = 0.8
    table = pd.DataFrame(
        {
            "fold": [(k // 2) % 2 for k in range(n)],
            "unit_id": [f"tile{k // 2}" for k in range(n)],
            "sample_id": [f"tile{k // 2}" for k in range(n)],
            "item_id": [f"tile{k // 2}/exp{k % 2}" for k in range(n)],
        }
    )
    for j, c in enumerate(CLASSES):
        table[f"prob_{c}"] = probs[:, j]
    for j, c in enumerate(CLASSES):
        table[f"target_{c}"] = (np.asarray(truth) == j).astype(float)
    return table


TRUTH = [0] * 20 + [1] * 10 + [2] * 10


def test_a_better_run_is_separated_from_the_reference():
    reference_calls = list(TRUTH)
    reference_calls[20:26] = [0] * 6  # three crack tiles called normal
    reference_calls[0:4] = [2] * 4  # two defect-free tiles called dents
    reference = predictions(reference_calls, TRUTH)
    candidate = predictions(TRUTH, TRUTH).sample(frac=1, random_state=0)  # any row order
    report = paired_difference(candidate, reference, rounds=300, seed=0)
    assert report["candidate"]["macro_f1"] == pytest.approx(1.0)
    assert report["reference"]["defects_called_normal"] == 6
    assert report["reference"]["defect_free_called_defect"] == 4
    assert report["candidate"]["defects_called_normal"] == 0
    expected = 1.0 - report["reference"]["macro_f1"]
    assert report["difference"] == pytest.approx(expected)
    low, high = report["difference_ci95"]
    assert 0 < low < expected < high
    assert report["share_of_rounds_at_or_below_zero"] < 0.025  # a round can miss all five
    assert (report["items"], report["units"], report["folds"]) == (40, 20, 2)


def test_the_same_decisions_differ_by_nothing():
    reference = predictions(TRUTH, TRUTH)
    candidate = reference.assign(prob_normal=reference["prob_normal"] * 0.9)  # same argmax
    report = paired_difference(candidate, reference, rounds=50, seed=0)
    assert report["difference"] == 0 and report["difference_ci95"] == (0.0, 0.0)
    assert report["share_of_rounds_at_or_below_zero"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.assign(fold=1 - t["fold"]), "other folds"),
        (lambda t: t.assign(unit_id=t["sample_id"] + "x"), "other folds"),
        (lambda t: t.iloc[1:], "other photos"),
        (
            lambda t: t.assign(target_normal=t["target_crack"], target_crack=t["target_normal"]),
            "other targets",
        ),
    ],
)
def test_runs_on_other_folds_or_data_are_refused(change, message):
    reference = predictions(TRUTH, TRUTH)
    with pytest.raises(ValueError, match=message):
        paired_difference(change(reference.copy()), reference, rounds=10, seed=0)
