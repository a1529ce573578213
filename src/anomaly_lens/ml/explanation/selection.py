"""Which (sample, class) pairs an explanation report shows: per class, samples predicted
right, wrong and most confidently, the classes taking turns under a cap."""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.evaluation.predictions import mask_classes, probability_columns
from anomaly_lens.ml.explanation.settings import XaiSelection
from anomaly_lens.ml.serving.predictor import DecisionRule


def predicted(probs: pd.DataFrame, classes: list[str], label_type: str) -> pd.DataFrame:
    """Per row and class, whether the model predicts it (``DecisionRule``'s default: 0.5,
    or the most probable class)."""
    decisions, _, _ = DecisionRule().apply(probs.to_numpy(), label_type)
    return pd.DataFrame(decisions.astype(bool), columns=classes, index=probs.index)


def _draw(rows: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    return rows.sample(n=min(count, len(rows)), random_state=seed) if count else rows.iloc[:0]


def label_rows(cache: ImageCache, ids: list[str], classes: list[str]) -> pd.DataFrame:
    """A segmentation-only model has no class scores: its samples' labels stand in for
    them (probability 1 where the class is present), so the selection takes samples that
    carry each class."""
    targets = cache.labels[cache.positions(ids)].astype(np.float32)
    names = mask_classes(classes)
    frame = pd.DataFrame(targets, columns=probability_columns("target", names))
    frame[probability_columns("prob", names)] = targets
    if "normal" in classes:
        frame["prob_normal"] = frame["target_normal"] = (targets.sum(1) == 0).astype(float)
    return frame.assign(sample_id=ids)


def _one_class(table: pd.DataFrame, said: pd.Series, quota: XaiSelection, seed: int):
    """One class's rows: right (``correct``), wrong (missed first, then false alarms) and
    the most confident of the rest."""
    target = table["target"] > 0
    correct = _draw(table[target & said], quota.correct, seed)
    wrong = pd.concat(
        [
            _draw(table[target & ~said], quota.wrong, seed),
            _draw(table[~target & said], quota.wrong, seed),
        ]
    ).iloc[: quota.wrong]
    chosen = pd.concat([correct.assign(reason="correct"), wrong.assign(reason="wrong")])
    rest = table.drop(index=chosen.index).nlargest(quota.most_confident, "prob")
    return pd.concat([chosen, rest.assign(reason="most_confident")])


def select_pairs(
    rows: pd.DataFrame,
    classes: list[str],
    label_type: str,
    quota: XaiSelection,
    max_samples: int,
    seed: int,
) -> pd.DataFrame:
    """One row per (sample, class) explained, at most ``max_samples``, the classes taking
    turns so that a cap keeps every class (``normal`` aside)."""
    rows = rows.reset_index(drop=True)
    probs = rows[probability_columns("prob", classes)].set_axis(classes, axis=1)
    targets = rows[probability_columns("target", classes)].set_axis(classes, axis=1) > 0
    said = predicted(probs, classes, label_type)
    per_class = []
    for k, name in enumerate(mask_classes(classes)):
        table = pd.DataFrame(
            {"sample_id": rows["sample_id"], "class": name, "prob": probs[name],
             "target": targets[name].astype(int)}
        )  # fmt: skip
        per_class.append(_one_class(table, said[name], quota, seed + k))
    turns = pd.concat([t.assign(turn=range(len(t))) for t in per_class])
    selection = turns.sort_values(["turn", "class"], kind="stable").head(max_samples)
    return selection.drop(columns="turn").reset_index(drop=True)
