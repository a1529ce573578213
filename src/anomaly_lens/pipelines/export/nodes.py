"""Nodes of the ``export`` pipeline."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.evaluation.predictions import probability_columns
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.ml.serving.onnx_graph import (
    graph_description,
)
from anomaly_lens.ml.serving.predictor import Predictor, ServingSettings
from anomaly_lens.ml.training.datasets import build_loaders, model_datasets
from anomaly_lens.parameters import ExportParams, parse_block

logger = logging.getLogger(__name__)


class ExportParityError(ValueError):
    """onnxruntime's probabilities differ from PyTorch's by more than the tolerance."""


def _check_ids(cache: ImageCache, splits: pd.DataFrame, size: int) -> list[str]:
    """Up to ``size`` cached samples, test samples first."""
    order = {"test": 0, "val": 1, "train": 2}
    ranked = splits.assign(rank=splits["split"].map(order).fillna(3)).sort_values("rank")
    return [s for s in ranked["sample_id"] if s in set(cache.sample_ids)][:size]


def _parity(predictor: Predictor, onnx_model: bytes, cache: ImageCache, ids, tolerance) -> dict:
    """The predictor with each engine on the same samples: the largest probability
    difference, and whether every decision agrees; raises ``ExportParityError``."""
    engines = ("torch", "onnxruntime")
    tables = [
        replace(
            predictor, settings=predictor.settings.model_copy(update={"engine": engine})
        ).predict(cache, onnx_model, ids=ids)[0]
        for engine in engines
    ]
    probs, decisions = (probability_columns(k, predictor.bundle.classes) for k in ("prob", "pred"))
    max_abs_diff = float(np.abs(tables[0][probs].to_numpy() - tables[1][probs].to_numpy()).max())
    if max_abs_diff > tolerance:
        raise ExportParityError(
            f"onnxruntime and PyTorch probabilities differ by {max_abs_diff:.2e} "
            f"(> export.tolerance {tolerance:.0e}) on {len(ids)} samples"
        )
    agree = tables[0][decisions].to_numpy() == tables[1][decisions].to_numpy()
    return {
        "max_abs_diff": max_abs_diff,
        "n_checked": len(ids),
        "decisions_agree": bool(agree.all()),
    }


def export_model(
    model: ModelBundle,
    calibrator: dict | None,
    image_cache: dict,
    splits: pd.DataFrame,
    params: dict,
) -> tuple[bytes, dict]:
    """``onnx_model`` (resize, the model, the calibrator's temperatures (1 without one) and
    sigmoid/softmax in one graph; batch, height and width dynamic) and ``export_report``
    (the calibrator's thresholds included: decisions stay outside the graph). The model's
    predictor checks the graph: with either engine, the same probabilities (within
    ``export.tolerance``, else ``ExportParityError``) and decisions on cached samples."""
    settings = parse_block(ExportParams, params)
    if model.input_clahe:
        raise ValueError(
            "The model was trained on CLAHE-equalised images; CLAHE is not part of the ONNX "
            "graph. Train with train.augmentation.clahe=false to export"
        )
    serving = ServingSettings(tta="none", batch_size=settings.check_samples)
    predictor = Predictor.of(model, calibrator, None, serving)
    cache = ImageCache.from_arrays(image_cache)
    ids = _check_ids(cache, splits, settings.check_samples)
    loader = build_loaders(model_datasets(cache, {"x": ids}, model), 1, 0, False, 0)["x"]
    onnx_model = predictor.onnx_graph(next(iter(loader)))
    parity = _parity(predictor, onnx_model, cache, ids, settings.tolerance)
    report = {
        **parity,
        "tolerance": settings.tolerance,
        **graph_description(onnx_model),
        **{
            k: getattr(model, k)
            for k in ("classes", "label_type", "views", "per_view", "image_size")
        },
        "model_id": predictor.identity,
        "calibrator": predictor.calibration_note or predictor.calibrator.model_id,
        "temperature": predictor.temperature,
        "thresholds": predictor.calibrator.thresholds if predictor.calibrator else None,
        "model_trained_at": model.trained_at,
    }
    logger.info("ONNX export: %d bytes, max |diff| %.1e", len(onnx_model), parity["max_abs_diff"])
    return onnx_model, report
