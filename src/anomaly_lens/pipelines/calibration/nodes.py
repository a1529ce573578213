"""Nodes of the ``calibration`` pipeline. Fitted on the validation split only; the test
split is only scored."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from sklearn.metrics import f1_score

from anomaly_lens.ml.evaluation.calibration import (
    CALIBRATION_BINS,
    Calibrator,
    calibration_summary,
    fit_temperature,
    separated,
    tune_thresholds,
)
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.evaluation.predictions import per_sample_table, probability_columns
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.ml.serving.identity import model_identity
from anomaly_lens.parameters import CalibrationParams, parse_block
from anomaly_lens.tracking import as_mlflow_metrics

logger = logging.getLogger(__name__)


def _arrays(rows: pd.DataFrame, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return (
        rows[probability_columns("prob", classes)].to_numpy(np.float32),
        rows[probability_columns("target", classes)].to_numpy(np.float32),
    )


def _per_sample(rows: pd.DataFrame, probs: np.ndarray, classes: list[str]):
    """A per-view model's sample-level probabilities (``probs`` of its photos averaged)
    and targets."""
    photos = rows.assign(**dict(zip(probability_columns("prob", classes), probs.T, strict=True)))
    return _arrays(per_sample_table(photos, classes), classes)


def _separated_classes(probs: np.ndarray, targets: np.ndarray, model: ModelBundle) -> list[str]:
    """Classes (multi-class: all or none) the validation predictions separate perfectly:
    their temperature is not fitted (see ``fit_temperature``)."""
    flags = separated(torch.from_numpy(probs), torch.from_numpy(targets), model.label_type)
    if model.label_type == "multiclass":
        return list(model.classes) if bool(flags[0]) else []
    return [c for c, flag in zip(model.classes, flags.tolist(), strict=True) if flag]


def _summary(probs: np.ndarray, targets: np.ndarray, label_type: str, classes) -> dict:
    return calibration_summary(
        torch.from_numpy(probs), torch.from_numpy(targets), label_type, classes
    )


def _macro_f1(probs: np.ndarray, targets: np.ndarray, thresholds) -> float:
    return float(
        f1_score(targets, probs >= np.asarray(thresholds), average="macro", zero_division=0)
    )


def _fit(val: pd.DataFrame, model: ModelBundle, settings) -> Calibrator:
    """Temperatures, then (multi-label) per-class thresholds on the calibrated validation
    probabilities of samples (a per-view model's: its photos' mean): the only fit on
    predictions, on validation rows only."""
    classes, label_type = model.classes, model.label_type
    val_probs, val_targets = _arrays(val, classes)
    temperature = fit_temperature(
        torch.from_numpy(val_probs),
        torch.from_numpy(val_targets),
        label_type,
        settings.per_class_temperature,
    ).tolist()
    thresholds = None
    if label_type == "multilabel":
        val_after = Calibrator(classes, label_type, temperature, None).apply(val_probs)
        probs, targets = (
            _per_sample(val, val_after, classes) if model.per_view else (val_after, val_targets)
        )
        goals = [settings.threshold_targets.get(c, 0.0) for c in classes]
        thresholds = tune_thresholds(probs, targets, settings.threshold_rule, goals)
    return Calibrator(classes, label_type, temperature, thresholds, model_identity(model))


def _scored(test: pd.DataFrame, calibrator: Calibrator, model: ModelBundle) -> dict:
    """Test before and after, per sample (and per photo for a per-view model); macro-F1
    at 0.5 and at the thresholds."""
    classes, label_type, report = model.classes, model.label_type, {}
    probs, targets = _arrays(test, classes)
    after = calibrator.apply(probs)
    if model.per_view:
        report["photo"] = _before_after(probs, after, targets, label_type, classes)
        probs, _ = _per_sample(test, probs, classes)
        after, targets = _per_sample(test, after, classes)
    report["sample"] = _before_after(probs, after, targets, label_type, classes)
    if calibrator.thresholds:
        report["test_macro_f1_at_0.5"] = _macro_f1(after, targets, 0.5)
        report["test_macro_f1_at_thresholds"] = _macro_f1(after, targets, calibrator.thresholds)
    return report


def calibrate(
    predictions: pd.DataFrame, model: ModelBundle, params: dict
) -> tuple[dict, dict, dict]:
    """``calibrator`` (temperatures and thresholds fitted on val), ``calibration_metrics``
    (test before/after: ECE, MCE, Brier, NLL; macro-F1 at 0.5 and at the thresholds) and
    the headline figures for the MLflow run."""
    settings = parse_block(CalibrationParams, params)
    val = predictions[predictions["split"] == "val"]
    test = predictions[predictions["split"] == "test"]
    if set(val["sample_id"]) & set(test["sample_id"]):
        raise ValueError("evaluation_predictions has samples in both val and test")
    if val.empty or test.empty:
        raise ValueError("Calibration needs val and test predictions: run `train` first")
    calibrator = _fit(val, model, settings)
    thresholds = calibrator.thresholds
    report = {
        "fitted_on": {"split": "val", "n": int(len(val))},
        "scored_on": {"split": "test", "n": int(len(test))},
        "bins": CALIBRATION_BINS,
        "temperature": calibrator.temperature,
        "separated_on_val": _separated_classes(*_arrays(val, model.classes), model),
        "thresholds": dict(zip(model.classes, thresholds, strict=True)) if thresholds else None,
        "threshold_rule": settings.threshold_rule if thresholds else "most probable class",
        "threshold_level": "sample",
        **_scored(test, calibrator, model),
    }
    sample = report["sample"]
    flat = {f"{k}_{when}": sample[when][k] for when in ("before", "after") for k in sample["before"]
            if k != "per_class"}  # fmt: skip
    logger.info("Calibration (test samples): ECE %.3f -> %.3f, NLL %.3f -> %.3f",
                flat["ece_before"], flat["ece_after"], flat["nll_before"], flat["nll_after"])  # fmt: skip
    return calibrator.to_dict(), json_safe(report | flat), as_mlflow_metrics(flat)


def _before_after(before, after, targets, label_type, classes) -> dict:
    return {
        "before": _summary(before, targets, label_type, classes),
        "after": _summary(after, targets, label_type, classes),
    }


def plot_reliability(predictions: pd.DataFrame, calibrator: dict) -> Figure:
    """Reliability diagrams of the test split before and after temperature scaling:
    accuracy against confidence in 15 equal-width bins (multi-class: the top label;
    multi-label: every class's positive probability pooled)."""
    fitted = Calibrator(**calibrator)
    test = predictions[predictions["split"] == "test"]
    probs, targets = _arrays(test, fitted.classes)
    fig = Figure(figsize=(10, 4.5), layout="tight")
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    for axes, (title, p) in zip(
        fig.subplots(1, 2), (("before", probs), ("after", fitted.apply(probs))), strict=True
    ):
        if fitted.label_type == "multiclass":
            confidence, correct = p.max(1), p.argmax(1) == targets.argmax(1)
        else:
            confidence, correct = p.ravel(), targets.ravel() > 0.5
        index = np.clip(np.digitize(confidence, edges) - 1, 0, CALIBRATION_BINS - 1)
        counts = np.bincount(index, minlength=CALIBRATION_BINS)
        accuracy = np.bincount(index, correct, CALIBRATION_BINS) / np.maximum(counts, 1)
        centres = (edges[:-1] + edges[1:]) / 2
        axes.bar(centres, accuracy, width=1 / CALIBRATION_BINS, edgecolor="k", alpha=0.7)
        axes.plot([0, 1], [0, 1], "r--", label="perfect calibration")
        ece = calibration_summary(
            torch.from_numpy(p), torch.from_numpy(targets), fitted.label_type
        )["ece"]
        axes.set(
            xlabel="confidence",
            ylabel="observed frequency",
            xlim=(0, 1),
            ylim=(0, 1),
            title=f"test, {title} scaling (ECE {ece:.3f})",
        )
        axes.legend(fontsize="small")
    return fig
