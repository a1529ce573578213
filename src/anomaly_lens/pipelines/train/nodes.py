"""Nodes of the ``train`` pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import torch
import torchmetrics.functional.classification as tmc
from matplotlib.figure import Figure

from anomaly_lens.ml.data.cache import ImageCache, build_image_cache, cache_fingerprint
from anomaly_lens.ml.data.splitting import ids_by_split, units_of
from anomaly_lens.ml.evaluation import baseline
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.evaluation.predictions import (
    per_sample_table,
    predict,
    prediction_table,
    probability_columns,
    score,
)
from anomaly_lens.ml.models.bundle import load_model
from anomaly_lens.ml.training.core import train_on_cache
from anomaly_lens.ml.training.datasets import (
    build_datasets,
    build_loaders,
    label_task,
    task_targets,
)
from anomaly_lens.ml.training.settings import TrainSettings
from anomaly_lens.parameters import parse_block
from anomaly_lens.tracking import as_mlflow_metrics

logger = logging.getLogger(__name__)


def cache_images(
    samples: pd.DataFrame,
    manifest: pd.DataFrame,
    masks: pd.DataFrame,
    raw_images: Mapping[str, Callable[[], bytes]],
    class_names: list[str],
    views: list[str],
    params: dict,
) -> dict[str, np.ndarray]:
    """Decode and resize every sample's views once; later runs reuse the arrays."""
    image_size = parse_block("train", params).image_size
    cache = build_image_cache(
        samples,
        manifest,
        masks,
        lambda pid: raw_images[pid](),
        views=views,
        classes=class_names,
        image_size=image_size,
    )
    logger.info("Image cache: %s samples x %s views at %d px", *cache.images.shape[:2], image_size)
    return cache.arrays()


def _task(cache: ImageCache, settings: TrainSettings) -> tuple[str, np.ndarray, list[str]]:
    """Label type, targets per cache position and class names of the task the data pose."""
    return label_task(cache.labels, cache.classes, settings.label_type)


def _datasets(cache, splits, settings: TrainSettings, targets, views, per_view):
    """The train/val/test datasets of a split table (train augmented)."""
    return build_datasets(
        cache, ids_by_split(splits), targets, views, per_view, settings.augmentation, settings.seed
    )


def _loaders(datasets, settings: TrainSettings):
    return build_loaders(
        datasets,
        settings.trainer.batch_size,
        settings.trainer.num_workers,
        settings.balanced_sampler,
        settings.seed,
    )


def train_model(
    image_cache: dict,
    samples: pd.DataFrame,
    manifest: pd.DataFrame,
    splits: pd.DataFrame,
    class_names: list[str],
    views: list[str],
    params: dict,
) -> tuple[dict, pd.DataFrame]:
    """Fit with Lightning; return the best checkpoint's model bundle and the epoch history."""
    settings = parse_block("train", params)
    cache = ImageCache.from_arrays(image_cache)
    expected = cache_fingerprint(samples, manifest, views, class_names, settings.image_size)
    if cache.fingerprint != expected:
        raise ValueError(
            "The image cache was built from other inputs: run the `train` pipeline "
            "from its start (the cache_images node) to rebuild it"
        )
    result = train_on_cache(cache, ids_by_split(splits), settings)
    return result.bundle, result.history


def _split_metrics(probs, targets, seg, masks, classes, label_type, settings, groups=None):
    """Classification and segmentation metrics of one split, with bootstrap intervals."""
    return score(
        probs,
        targets,
        seg,
        masks,
        classes,
        label_type,
        settings.bootstrap_rounds,
        settings.seed,
        groups,
    )


def evaluate_model(
    model_bundle: dict, image_cache: dict, splits: pd.DataFrame, params: dict
) -> tuple[dict, pd.DataFrame]:
    """Metrics on val and test (bootstrap 95 % intervals for macro-F1 and mean IoU), and
    every val/test prediction as a table.

    A per-view model is scored per image, and per sample (``per_sample``) from the mean of
    its views' probabilities: the figure to compare with a fused multi-view model. The
    bootstrap resamples units (specimens, tiles), not images: see docs/models.md.
    """
    settings = parse_block("train", params)
    unit_of = units_of(splits)
    cache = ImageCache.from_arrays(image_cache)
    model = load_model(model_bundle)
    label_type, classes = model_bundle["label_type"], model_bundle["classes"]
    per_view = model_bundle["per_view"]
    targets = task_targets(cache.labels, label_type)
    loaders = _loaders(
        _datasets(cache, splits, settings, targets, model_bundle["views"], per_view), settings
    )
    report = {
        "best_epoch": model_bundle["best_epoch"],
        "n_parameters": model_bundle["n_parameters"],
        "label_type": label_type,
        "classes": classes,
        "views": model_bundle["views"],
        "per_view": per_view,
    }
    tables = []
    for split in ("val", "test"):
        dataset = loaders[split].dataset
        found = predict(model, loaders[split], settings.tta)
        probs, split_targets, seg, masks = found.probs, found.targets, found.seg_probs, found.masks
        groups = unit_of.loc[dataset.cache.sample_ids[dataset.positions]].to_numpy()
        report[split] = {
            "n_samples": len(dataset),
            **_split_metrics(
                probs, split_targets, seg, masks, classes, label_type, settings, groups
            ),
        }
        if probs is None:
            continue
        table = prediction_table(split, dataset, probs, split_targets, classes)
        tables.append(table)
        if per_view:
            samples = per_sample_table(table, classes)
            report[split]["per_sample"] = {
                "n_samples": len(samples),
                **_split_metrics(
                    torch.from_numpy(samples[probability_columns("prob", classes)].to_numpy()),
                    torch.from_numpy(samples[probability_columns("target", classes)].to_numpy()),
                    None,
                    None,
                    classes,
                    label_type,
                    settings,
                    unit_of.loc[samples["sample_id"]].to_numpy(),
                ),
            }
    return json_safe(report), pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def headline_metrics(metrics: dict) -> dict:
    """The test figures as MLflow metrics of the run, to compare runs in the MLflow UI:
    ``test_macro_f1`` and its interval, ``test_f1_<class>``, ``test_mean_iou`` (models with
    masks) and, for per-view models, ``test_sample_macro_f1`` (a sample's photos averaged)."""
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


def plot_training_curves(history: pd.DataFrame) -> Figure:
    """Losses and validation macro-F1 per epoch."""
    fig = Figure(figsize=(10, 4), layout="tight")
    left, right = fig.subplots(1, 2)
    for column in [c for c in history.columns if c.endswith("loss") and "step" not in c]:
        left.plot(history["epoch"], history[column], label=column)
    left.set(xlabel="epoch", title="loss")
    left.legend(fontsize="small")
    if "val_macro_f1" in history:
        right.plot(history["epoch"], history["val_macro_f1"], marker="o")
    right.set(xlabel="epoch", title="validation macro-F1", ylim=(0, 1.02))
    return fig


def evaluate_baseline(image_cache: dict, splits: pd.DataFrame, params: dict) -> dict:
    """Random forest on hand-crafted per-view features, fitted on train, scored like the model
    (on the same items: samples, or single views with ``per_view``)."""
    settings = parse_block("train", params)
    cache = ImageCache.from_arrays(image_cache)
    unit_of = units_of(splits)
    label_type, targets, classes = _task(cache, settings)
    views = settings.views or list(cache.views)
    datasets = _datasets(cache, splits, settings, targets, views, settings.per_view)
    features, split_targets = {}, {}
    for split, dataset in datasets.items():
        features[split] = baseline.sample_features(
            np.stack([cache.images[i][v] for i, v in dataset.items]),
            np.stack([cache.view_mask[i][v] for i, v in dataset.items]),
        )
        split_targets[split] = targets[dataset.positions]
    forest = baseline.fit_forest(
        features["train"],
        split_targets["train"],
        label_type,
        settings.seed,
        settings.baseline_trees,
    )
    report = {
        "model": "random_forest",
        "features_per_view": list(baseline.FEATURES),
        "views": views,
        "per_view": settings.per_view,
        "label_type": label_type,
        "classes": classes,
    }
    for split in ("val", "test"):
        probs = torch.from_numpy(
            baseline.forest_probabilities(forest, features[split], label_type, len(classes))
        )
        dataset = datasets[split]
        report[split] = {
            "n_samples": len(probs),
            **_split_metrics(
                probs,
                torch.from_numpy(split_targets[split]),
                None,
                None,
                classes,
                label_type,
                settings,
                unit_of.loc[dataset.cache.sample_ids[dataset.positions]].to_numpy(),
            ),
        }
    return json_safe(report)
