"""Nested cross-validation: each outer fold's setting is chosen without that fold."""

from __future__ import annotations

import numpy as np

from anomaly_lens.ml.evaluation.nested import nested_logistic

CLASSES = ["normal", "crack", "hole"]


def data(seed: int = 0):
    """Three classes, 60 items in 4 folds: one feature set tells them apart, one is noise."""
    rng = np.random.default_rng(seed)
    label = np.arange(60) % 3
    targets = np.eye(3, dtype=np.float32)[label]
    informative = rng.normal(size=(60, 8)) + 3 * targets @ rng.normal(size=(3, 8))
    features = {"informative": informative, "noise": rng.normal(size=(60, 8))}
    return features, targets, np.repeat(np.arange(4), 15)


def test_the_informative_features_are_chosen_and_scored_on_folds_the_choice_never_saw():
    features, targets, fold = data()
    probs, report = nested_logistic(features, targets, fold, CLASSES, "multiclass", [0.1, 1.0], 0)
    assert probs.shape == targets.shape and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert {c["features"] for c in report["outer_choices"]} == {"informative"}
    assert len(report["candidates"]) == 4
    best = max(c["oof_macro_f1"] for c in report["candidates"])
    assert report["selected"]["oof_macro_f1"] == best
    assert (probs.argmax(1) == targets.argmax(1)).mean() > 0.9


def test_an_outer_folds_labels_never_reach_its_own_choice():
    features, targets, fold = data(1)
    _, report = nested_logistic(features, targets, fold, CLASSES, "multiclass", [0.01, 1.0], 0)
    scrambled = targets.copy()
    scrambled[fold == 2] = np.roll(targets[fold == 2], 1, axis=1)  # every label of fold 2 wrong
    probs, changed = nested_logistic(
        features, scrambled, fold, CLASSES, "multiclass", [0.01, 1.0], 0
    )
    assert changed["outer_choices"][2] == report["outer_choices"][2]
    assert (
        changed["outer_choices"][0]["inner_macro_f1"] < report["outer_choices"][0]["inner_macro_f1"]
    )
