"""Nodes of the ``evaluate`` pipeline (also the last part of ``train``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torchmetrics.functional.classification as tmc
from matplotlib.figure import Figure

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.data.splitting import ids_by_split, split_identity, units_of
from anomaly_lens.ml.evaluation import baseline
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.evaluation.predictions import Scoring, evaluate_part, probability_columns
from anomaly_lens.ml.models.bundle import ModelBundle, load_model
from anomaly_lens.ml.training.datasets import (
    build_datasets,
    build_loaders,
    label_task,
    model_datasets,
)
from anomaly_lens.ml.training.settings import TrainSettings
from anomaly_lens.parameters import parse_block
from anomaly_lens.tracking import as_mlflow_metrics

REPORTED = ("best_epoch", "n_parameters", "label_type", "classes", "views", "per_view")


def evaluate_baseline(
    model_bundle: ModelBundle, image_cache: dict, splits: pd.DataFrame, params: dict
) -> dict:
    """A random forest on hand-crafted per-view features and a logistic regression on
    frozen ImageNet features, fitted on train and scored like the model: its task, views
    and items (samples, or single views with ``per_view``), tied to the split they used."""
    settings = parse_block(TrainSettings, params)
    cache = ImageCache.from_arrays(image_cache)
    label_type, targets, classes = label_task(cache.labels, cache.classes, model_bundle.label_type)
    views = model_bundle.views
    datasets = build_datasets(
        cache,
        ids_by_split(splits),
        targets,
        views,
        model_bundle.per_view,
        settings.augmentation,
        settings.seed,
    )
    scoring = Scoring(settings.bootstrap_rounds, settings.seed, units_of(splits))
    task = (datasets, label_type, classes)
    return json_safe(
        {
            "split_id": split_identity(splits),
            "views": views,
            "per_view": model_bundle.per_view,
            "random_forest": baseline.forest_report(*task, settings.baseline_trees, scoring),
            "frozen_logistic": baseline.logistic_report(*task, settings.baseline_backbone, scoring),
        }
    )


def evaluate_model(
    model_bundle: ModelBundle,
    image_cache: dict,
    splits: pd.DataFrame,
    baseline_metrics: dict | None,
    params: dict,
) -> tuple[dict, pd.DataFrame]:
    """Metrics on val and test (bootstrap 95 % intervals for macro-F1 and mean IoU), the
    baselines' figures on the same split beside them, and every val/test prediction as a
    table.

    A per-view model is scored per image, and per sample (``per_sample``) from the mean of
    its views' probabilities: the figure to compare with a fused multi-view model. The
    bootstrap resamples units (specimens, tiles), not images: see docs/models.md.
    """
    settings = parse_block(TrainSettings, params)
    cache = ImageCache.from_arrays(image_cache)
    parts = {k: v for k, v in ids_by_split(splits).items() if k in ("val", "test")}
    datasets = model_datasets(cache, parts, model_bundle)
    batch_size = settings.trainer.batch_size
    loaders = build_loaders(datasets, batch_size, settings.trainer.num_workers, False, 0)
    scoring = Scoring(settings.bootstrap_rounds, settings.seed, units_of(splits))
    model = load_model(model_bundle)
    report, tables = {k: getattr(model_bundle, k) for k in REPORTED}, []
    for split in ("val", "test"):
        report[split], table = evaluate_part(
            model, loaders[split], model_bundle, settings.tta, scoring, split
        )
        if table is not None:
            tables.append(table)
    report["baselines"] = baseline.beside_network(baseline_metrics, split_identity(splits))
    return json_safe(report), pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def headline_metrics(metrics: dict) -> dict:
    """The test figures as MLflow metrics of the run, to compare runs in the MLflow UI:
    ``test_macro_f1`` and its interval, ``test_f1_<class>``, ``test_mean_iou`` (models with
    masks), for per-view models ``test_sample_macro_f1`` (a sample's photos averaged), and
    the baselines' ``test_macro_f1_random_forest`` and ``test_macro_f1_frozen_logistic``."""
    test = metrics["test"]
    figures = {}
    if "macro_f1" in test:
        low, high = test["macro_f1_ci95"]
        figures |= {"test_macro_f1": test["macro_f1"], "test_macro_f1_ci95_low": low}
        figures |= {"test_macro_f1_ci95_high": high}
        figures |= {f"test_f1_{c}": v["f1"] for c, v in test["per_class"].items()}
    if "segmentation" in test:
        figures["test_mean_iou"] = test["segmentation"]["mean_iou"]
    if "per_sample" in test:
        figures["test_sample_macro_f1"] = test["per_sample"]["macro_f1"]
    for name, beside in metrics.get("baselines", {}).items():
        if name in baseline.BASELINES and "macro_f1" in beside["test"]:
            figures[f"test_macro_f1_{name}"] = beside["test"]["macro_f1"]
    return as_mlflow_metrics(figures)  # None: an interval the bootstrap could not draw


def plot_evaluation(predictions: pd.DataFrame, metrics: dict) -> Figure:
    """Test-set confusion (matrix, or per class for multi-label) and per-class PR curves."""
    if "confusion" not in metrics["test"]:  # a segmentation-only model: no class scores
        fig = Figure(figsize=(6, 2))
        axes = fig.subplots()
        axes.axis("off")
        axes.text(0.5, 0.5, "no class predictions (segmentation-only model)", ha="center")
        return fig
    classes, label_type = metrics["classes"], metrics["label_type"]
    test = predictions[predictions["split"] == "test"]
    probs = torch.tensor(test[probability_columns("prob", classes)].to_numpy(np.float32))
    targets = torch.tensor(test[probability_columns("target", classes)].to_numpy(np.int64))
    fig = Figure(figsize=(12, 5), layout="tight")
    left, right = fig.subplots(1, 2)
    confusion = metrics["test"]["confusion"]
    if label_type == "multiclass":
        matrix, x_labels = np.array(confusion), classes
        left.set(xlabel="predicted", ylabel="true", title="test confusion")
    else:
        matrix = np.array([[confusion[c][k] for k in ("tp", "fn", "fp", "tn")] for c in classes])
        x_labels = ["TP", "FN", "FP", "TN"]
        left.set(title="test confusion per class")
    left.imshow(matrix, cmap="Blues")
    left.set_xticks(range(len(x_labels)), x_labels, rotation=45, ha="right")
    left.set_yticks(range(len(classes)), classes)
    for (row, col), value in np.ndenumerate(matrix):
        left.text(col, row, str(value), ha="center", va="center", fontsize="small")
    for k, name in enumerate(classes):
        if targets[:, k].any():
            precision, recall, _ = tmc.binary_precision_recall_curve(probs[:, k], targets[:, k])
            ap = metrics["test"]["per_class"][name]["ap"]
            right.plot(recall, precision, label=f"{name} (AP {ap:.2f})")
    right.set(
        xlabel="recall", ylabel="precision", title="test PR curves", xlim=(0, 1), ylim=(0, 1.02)
    )
    right.legend(fontsize="small")
    return fig
