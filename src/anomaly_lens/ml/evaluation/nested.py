"""A figure no selection has seen: nested cross-validation over a small grid of frozen-
feature logistic regressions. Each outer fold's setting is chosen by cross-validation on
the other folds alone, then scored on the outer fold; beside it, the best setting's plain
out-of-fold figure, which is what choosing on the folds that report it gives. No Kedro."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from anomaly_lens.ml.evaluation.baseline import fit_logistic, logistic_probabilities
from anomaly_lens.ml.evaluation.metrics import classification_metrics


def _out_of_fold(
    features: np.ndarray,
    targets: np.ndarray,
    fold: np.ndarray,
    label_type: str,
    c: float,
    seed: int,
) -> np.ndarray:
    """Each item's probabilities from a model fitted on the folds other than its own."""
    probs = np.zeros(targets.shape, dtype=np.float32)
    for k in np.unique(fold):
        test = fold == k
        model = fit_logistic(features[~test], targets[~test], label_type, seed, c)
        probs[test] = logistic_probabilities(model, features[test], label_type, targets.shape[1])
    return probs


def _macro_f1(probs: np.ndarray, targets: np.ndarray, classes, label_type: str) -> float:
    return classification_metrics(
        torch.from_numpy(probs), torch.from_numpy(targets.astype(np.float32)), classes, label_type
    )["macro_f1"]


def nested_logistic(
    features: Mapping[str, np.ndarray],
    targets: np.ndarray,
    fold: np.ndarray,
    classes: Sequence[str],
    label_type: str,
    cs: Sequence[float],
    seed: int,
) -> tuple[np.ndarray, dict]:
    """Nested cross-validation over every (features, ``c``) pair: ``features`` maps a name
    (the backbone) to (N, F) item features. Returns the outer out-of-fold probabilities and
    a report: each candidate's plain out-of-fold macro-F1 over all folds, the best of them
    (the selected figure), and each outer fold's choice and its inner macro-F1."""
    candidates = [(name, float(c)) for name in features for c in cs]
    outer = np.zeros(targets.shape, dtype=np.float32)
    choices = []
    for k in np.unique(fold):
        inner = fold != k
        inner_f1 = [
            _macro_f1(
                _out_of_fold(features[name][inner], targets[inner], fold[inner], label_type, c, seed),
                targets[inner], classes, label_type,
            )
            for name, c in candidates
        ]  # fmt: skip
        name, c = candidates[int(np.argmax(inner_f1))]
        model = fit_logistic(features[name][inner], targets[inner], label_type, seed, c)
        outer[~inner] = logistic_probabilities(
            model, features[name][~inner], label_type, len(classes)
        )
        choices.append({"fold": int(k), "features": name, "c": c, "inner_macro_f1": max(inner_f1)})
    plain = [
        {"features": name, "c": c, "oof_macro_f1": _macro_f1(
            _out_of_fold(features[name], targets, fold, label_type, c, seed), targets, classes, label_type
        )}
        for name, c in candidates
    ]  # fmt: skip
    best = max(plain, key=lambda row: row["oof_macro_f1"])
    return outer, {"candidates": plain, "selected": best, "outer_choices": choices}
