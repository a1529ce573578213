"""The hybrid of a one-class detector and a supervised classifier: the detector decides
normal or defect (it learnt normality from normal images only), the classifier names the
defect. Cross-validated fold by fold on the classifier's own folds, so the two are compared
photo by photo. No Kedro."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from anomaly_lens.ml.anomaly.evaluation import image_metrics, split_items
from anomaly_lens.ml.anomaly.fitting import fit_on_split
from anomaly_lens.ml.anomaly.settings import AnomalyParams
from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.evaluation.crossval import (
    fold_parts,
    paired_difference,
    pooled_report,
    prediction_classes,
)
from anomaly_lens.ml.evaluation.predictions import pixel_count_columns, probability_columns


def gated_probabilities(probs: np.ndarray, anomalous: np.ndarray, single_label: bool) -> np.ndarray:
    """The classifier's probabilities (rows, classes) under the detector's verdicts.
    Single-label with ``normal`` first: a photo the detector calls normal is normal; an
    anomalous one gets the classifier's defect classes renormalised (its most probable
    defect). Multi-label (no normal class): a normal photo has no defect."""
    anomalous = np.asarray(anomalous, bool)
    if not single_label:
        return probs * anomalous[:, None]
    gated = np.zeros_like(probs)
    gated[~anomalous, 0] = 1.0
    defects = probs[anomalous, 1:]
    gated[anomalous, 1:] = defects / np.clip(defects.sum(1, keepdims=True), 1e-12, None)
    return gated


def fold_as_split(samples: pd.DataFrame, fold: int) -> pd.DataFrame:
    """One round of the folds as a split table (``sample_id``, ``unit_id``, ``split``): the
    fold is ``test``, the next fold ``val`` (the threshold), the others ``train``."""
    part = np.empty(len(samples), dtype=object)
    for name, rows in fold_parts(samples["fold"].to_numpy(), fold, "next_fold").items():
        part[rows] = name
    return samples[["sample_id", "unit_id"]].assign(split=part).reset_index(drop=True)


def cross_validated_scores(
    cache: ImageCache, cv_folds: pd.DataFrame, settings: AnomalyParams, resize: str
) -> pd.DataFrame:
    """Every photo's out-of-fold anomaly score: per fold a detector fitted on the normal
    photos of the folds other than it and the next, its threshold set on the next; one row
    per photo (``item_id`` ``sample/view``) with ``fold``, ``anomaly_score``, ``threshold``
    and ``anomalous``."""
    samples = cv_folds.drop_duplicates("sample_id")
    if samples["fold"].nunique() < 3:
        raise ValueError("the gate needs at least 3 folds: train, threshold and test")
    tables = []
    for fold in sorted(samples["fold"].unique()):
        splits = fold_as_split(samples, int(fold))
        detector = fit_on_split(cache, splits, settings, resize)
        test = split_items(cache, splits, "test", detector.views)
        scores, _ = detector.score(test.images, settings.batch_size)
        tables.append(
            pd.DataFrame(
                {
                    "item_id": np.char.add(np.char.add(test.sample_ids, "/"), test.views),
                    "fold": int(fold),
                    "anomaly_score": scores.astype(np.float64),
                    "threshold": detector.threshold,
                    "anomalous": detector.flag(scores),
                }
            )
        )
    return pd.concat(tables, ignore_index=True)


def gate(predictions: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """A ``cv_predictions`` table with the gated probabilities and each photo's anomaly
    score, threshold and verdict; refused where a photo has no score or another fold."""
    classes, label_type = prediction_classes(predictions)
    joined = predictions.merge(
        scores, on="item_id", how="left", suffixes=("", "_gate"), validate="one_to_one"
    )
    if joined["anomaly_score"].isna().any() or (joined["fold"] != joined["fold_gate"]).any():
        raise ValueError("the gate's scores are not of these predictions' photos and folds")
    columns = probability_columns("prob", classes)
    joined[columns] = gated_probabilities(
        joined[columns].to_numpy(np.float64),
        joined["anomalous"].to_numpy(),
        label_type == "multiclass",
    )
    counts = [c for c in pixel_count_columns(classes) if c in joined]  # masks are not gated
    return joined.drop(columns=["fold_gate", *counts])


def _defective(predictions: pd.DataFrame) -> np.ndarray:
    """Whether each photo has a defect: a target other than ``normal``."""
    classes, _ = prediction_classes(predictions)
    defects = [c for c in classes if c != "normal"]
    return predictions[probability_columns("target", defects)].to_numpy().sum(1) > 0


def one_class_report(scores: pd.DataFrame, predictions: pd.DataFrame, rounds: int, seed: int):
    """The detector alone, out of fold: image AUROC, AUPR and F1 per photo and per sample
    (its highest photo) pooled over the folds, each photo's score divided by its fold's
    threshold (the folds' detectors differ in scale, the gate reads the ratio to 1), with
    unit-bootstrap intervals; and each fold's own AUROC."""
    frame = predictions[["item_id", "sample_id", "unit_id"]].merge(scores, on="item_id")
    frame = frame.assign(
        ratio=frame["anomaly_score"] / frame["threshold"], defect=_defective(predictions)
    )
    tiles = frame.groupby("sample_id").agg(
        ratio=("ratio", "max"), defect=("defect", "any"), unit_id=("unit_id", "first")
    )
    report = {
        level: image_metrics(
            part["ratio"].to_numpy(), part["defect"].to_numpy(), 1.0,
            part["unit_id"].to_numpy(), rounds, seed,
        )
        for level, part in (("per_photo", frame), ("per_sample", tiles))
    }  # fmt: skip
    report["per_fold_auroc"] = [
        float(roc_auc_score(part["defect"], part["anomaly_score"]))
        if part["defect"].nunique() == 2 else None
        for _, part in frame.groupby("fold")
    ]  # fmt: skip
    return report


def gate_report(
    scores: pd.DataFrame, models: dict[str, pd.DataFrame], rounds: int, seed: int
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Each classifier's out-of-fold predictions gated by the same scores, with its pooled
    report and its paired difference to the classifier alone (``cv_compare``'s), and the
    detector's own figures."""
    gated = {name: gate(table, scores) for name, table in models.items()}
    first = next(iter(models.values()))
    report = {
        "rule": "normal where the one-class detector's score is at or below its fold's "
        "threshold (set on the next fold), else the classifier's most probable defect",
        "one_class": one_class_report(scores, first, rounds, seed),
    }
    for name, table in gated.items():
        classes, label_type = prediction_classes(table)
        report[name] = {
            **pooled_report(table, classes, label_type, rounds, seed),
            "against_classifier_alone": paired_difference(table, models[name], rounds, seed),
        }
    return gated, report
