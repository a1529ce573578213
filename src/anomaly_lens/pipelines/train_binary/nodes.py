"""Nodes of the ``train_binary`` pipeline: each anomaly type's binary task and model (one
namespace per type), and their comparison with the multi-label model of ``train``."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import pandas as pd
import torch
from matplotlib.figure import Figure

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.data.splitting import ids_by_split, split_identity, units_of
from anomaly_lens.ml.evaluation.binary_comparison import (
    compare_part,
    comparison_plot,
    costs,
    table_rows,
    validation_rows,
    verdict,
)
from anomaly_lens.ml.evaluation.metrics import (
    json_safe,
)
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.ml.serving.identity import model_identity
from anomaly_lens.ml.training.binary import binary_cache, binary_splits
from anomaly_lens.ml.training.core import train_on_cache
from anomaly_lens.ml.training.curves import plot_training_curves
from anomaly_lens.ml.training.runs import nested_run
from anomaly_lens.ml.training.settings import TrainSettings
from anomaly_lens.parameters import BinaryParams, binary_train_settings, parse_block
from anomaly_lens.tracking import as_mlflow_metrics

logger = logging.getLogger(__name__)


def select_binary_task(
    image_cache: dict, splits: pd.DataFrame, anomaly_type: str, params: dict
) -> tuple[dict, pd.DataFrame]:
    """The type's one-class image cache and split table (``binary.other_anomalies``)."""
    settings = parse_block(BinaryParams, params)
    cache = ImageCache.from_arrays(image_cache)
    task_splits = binary_splits(splits, cache, anomaly_type, settings.other_anomalies)
    counts = task_splits["split"].value_counts().to_dict()
    logger.info(
        "binary.%s: %s samples per split (%s)", anomaly_type, counts, settings.other_anomalies
    )
    return binary_cache(cache, anomaly_type).arrays(), task_splits


def _flat(values: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def train_binary_model(
    image_cache: dict, splits: pd.DataFrame, anomaly_type: str, train: dict, binary: dict
) -> tuple[ModelBundle, pd.DataFrame]:
    """The type's model, trained with ``train`` merged with ``binary.common`` and
    ``binary.per_type.<type>`` (one sigmoid output), in a nested MLflow run of its own with
    its parameters, per-epoch metrics, curves and weights."""
    settings = binary_train_settings(train, parse_block(BinaryParams, binary), anomaly_type)
    folder = str(Path(settings.trainer.checkpoint_dir) / "binary" / anomaly_type)
    settings = settings.model_copy(
        update={"trainer": settings.trainer.model_copy(update={"checkpoint_dir": folder})}
    )
    cache = ImageCache.from_arrays(image_cache)
    params = _flat(settings.model_dump())
    with nested_run(f"binary · {anomaly_type}", params, anomaly_type=anomaly_type) as run:
        result = train_on_cache(cache, ids_by_split(splits, ["train", "val"]), settings)
        bundle = replace(result.bundle, split_id=split_identity(splits))
        if run is not None:
            mlflow.log_figure(plot_training_curves(result.history), "training_curves.png")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.pt"
                torch.save(bundle.to_saved(), path)
                mlflow.log_artifact(str(path), "model")
    plt.close("all")
    return bundle, result.history


def compare_binary(
    predictions: pd.DataFrame,
    model: ModelBundle,
    image_cache: dict,
    splits: pd.DataFrame,
    params: dict,
    binary: dict,
    *binary_parts,
) -> tuple[dict, pd.DataFrame, Figure]:
    """``binary_comparison``: per type, the binary model against the multi-label model on
    the same test samples (F1, AP, AUROC with intervals), the binary models assembled into
    one multi-label predictor, and what each approach costs (parameters, training and
    inference time). Per-view models are also compared photo by photo (``per_item``), the
    intervals still resampling whole groups; ``validation`` compares them on the whole
    validation split, the figures to choose ``binary.other_anomalies`` by.
    ``binary_parts``: each type's predictions and model, in turn."""
    settings = parse_block(TrainSettings, params)
    cache = ImageCache.from_arrays(image_cache)
    test_ids, val_ids = (ids_by_split(splits, [s])[s] for s in ("test", "val"))
    units, rounds = units_of(splits), settings.bootstrap_rounds
    pairs = list(zip(binary_parts[0::2], binary_parts[1::2], strict=True))
    report = {
        "model_id": model_identity(model),  # the models compared, by identity
        "binary_model_ids": {b.classes[0]: model_identity(b) for _, b in pairs},
        "other_anomalies": parse_block(BinaryParams, binary).other_anomalies,
    }
    n, part = compare_part(predictions, model, pairs, "sample", "test", units, rounds)
    report, parts = report | {"test_samples": n, **part}, {"test samples": part}
    if model.per_view and all(bundle.per_view for _, bundle in pairs):
        n, part = compare_part(predictions, model, pairs, "item", "test", units, rounds)
        report["per_item"], parts["test photos (per view)"] = {"test_items": n, **part}, part
    whole_val = [(validation_rows(b, cache, val_ids, settings.tta), b) for _, b in pairs]
    n, part = compare_part(predictions, model, whole_val, "sample", "val", units, rounds)
    report["validation"], parts["validation samples"] = {"val_samples": n, **part}, part
    report["cost"] = costs(model, pairs, cache, test_ids)
    binary_cost = report["cost"]["binary"]
    report["verdict"] = " ".join(verdict(part, level) for level, part in parts.items()) + (
        f" {len(pairs)} binary models have "
        f"{binary_cost['parameters'] / model.n_parameters:.1f}x the parameters of the "
        "multi-label model."
    )
    logger.info(report["verdict"])
    table = [row for level, part in parts.items() for row in table_rows(part["per_class"], level)]
    plotted = {level: part["per_class"] for level, part in parts.items()}
    return json_safe(report), pd.DataFrame(table), comparison_plot(plotted)


def binary_headline_metrics(comparison: dict) -> dict:
    """The comparison's figures as MLflow metrics of the run: ``binary.<type>.f1`` beside
    ``binary.<type>.multilabel_f1`` and their difference, and the assembled macro-F1 on
    test and (``binary.val_*``) on validation."""
    figures = {}
    for name, entry in comparison["per_class"].items():
        figures[f"binary.{name}.f1"] = entry["binary"]["f1"]
        figures[f"binary.{name}.multilabel_f1"] = entry["multilabel"]["f1"]
        figures[f"binary.{name}.f1_difference"] = entry["f1_difference"]
    assembled = comparison["assembled"]
    figures["binary.assembled_macro_f1"] = assembled["binary"]["macro_f1"]
    figures["binary.multilabel_macro_f1"] = assembled["multilabel"]["macro_f1"]
    figures["binary.macro_f1_difference"] = (
        assembled["binary"]["macro_f1"] - assembled["multilabel"]["macro_f1"]
    )
    validation = comparison["validation"]["assembled"]
    figures["binary.val_assembled_macro_f1"] = validation["binary"]["macro_f1"]
    figures["binary.val_multilabel_macro_f1"] = validation["multilabel"]["macro_f1"]
    if "per_item" in comparison:  # per-view models, photo by photo
        per_item = comparison["per_item"]["assembled"]
        figures["binary.assembled_item_macro_f1"] = per_item["binary"]["macro_f1"]
        figures["binary.multilabel_item_macro_f1"] = per_item["multilabel"]["macro_f1"]
    return as_mlflow_metrics(figures)
