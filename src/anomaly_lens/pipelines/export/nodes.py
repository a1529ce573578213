"""Nodes of the ``export`` pipeline."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pandas as pd

from anomaly_lens.ml.calibration import Calibrator
from anomaly_lens.ml.data import ImageCache
from anomaly_lens.ml.fitting import build_loaders, load_model, model_datasets
from anomaly_lens.ml.identity import mismatch, model_identity
from anomaly_lens.ml.inference import (
    ONNX_INPUTS,
    ONNX_LOGITS,
    ONNX_OUTPUT,
    ProbabilityModel,
    export_onnx,
    onnx_probabilities,
    onnx_session,
)
from anomaly_lens.parameters import parse_block

logger = logging.getLogger(__name__)


class ExportParityError(ValueError):
    """onnxruntime's probabilities differ from PyTorch's by more than the tolerance."""


def _check_batch(cache: ImageCache, splits: pd.DataFrame, model: dict, size: int):
    """Up to ``size`` cached items, test samples first, as one batch the model reads."""
    order = {"test": 0, "val": 1, "train": 2}
    ranked = splits.assign(rank=splits["split"].map(order).fillna(3)).sort_values("rank")
    ids = [s for s in ranked["sample_id"] if s in set(cache.sample_ids)][:size]
    dataset = model_datasets(cache, {"check": ids}, model)
    loader = build_loaders(dataset, size, 0, False, 0)["check"]
    return next(iter(loader))


def export_model(
    model: dict, calibrator: dict | None, image_cache: dict, splits: pd.DataFrame, params: dict
) -> tuple[bytes, dict]:
    """``onnx_model`` (resize, the model, the calibrator's temperatures (1 without one) and
    sigmoid/softmax in one graph; batch, height and width dynamic) and ``export_report``
    (the calibrator's thresholds included: decisions stay outside the graph); raises
    ``ExportParityError``
    when onnxruntime and PyTorch disagree on real cached samples by more than
    ``export.tolerance``."""
    settings = parse_block("export", params)
    if model["input_clahe"]:
        raise ValueError(
            "The model was trained on CLAHE-equalised images; CLAHE is not part of the ONNX "
            "graph. Train with train.augmentation.clahe=false to export"
        )
    identity = model_identity(model)
    fitted = Calibrator(**calibrator) if calibrator else None
    stale = fitted and mismatch("calibrator", fitted.model_id, identity)
    if stale:
        logger.warning("Exported without temperatures: %s", stale)
        fitted = None
    temperature = fitted.temperature if fitted else 1.0
    wrapped = ProbabilityModel(load_model(model), model["image_size"], temperature)
    batch = _check_batch(ImageCache.from_arrays(image_cache), splits, model, settings.check_samples)
    metadata = {"classes": model["classes"], "temperature": temperature, "model_id": identity}
    onnx_model = export_onnx(wrapped, batch.images, batch.view_mask, metadata)
    expected = wrapped(batch.images, batch.view_mask)[0].detach().numpy()
    found = onnx_probabilities(
        onnx_session(onnx_model), batch.images.numpy(), batch.view_mask.numpy()
    )
    max_abs_diff = float(np.abs(found - expected).max())
    if max_abs_diff > settings.tolerance:
        raise ExportParityError(
            f"onnxruntime and PyTorch probabilities differ by {max_abs_diff:.2e} "
            f"(> export.tolerance {settings.tolerance:.0e}) on {len(expected)} samples"
        )
    graph = onnx.load_from_string(onnx_model)
    report = {
        "max_abs_diff": max_abs_diff,
        "tolerance": settings.tolerance,
        "n_checked": int(len(expected)),
        "opset": int(next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))),
        "inputs": {
            i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in graph.graph.input
        },
        "input_names": list(ONNX_INPUTS),
        "output": ONNX_OUTPUT,
        "logits_output": ONNX_LOGITS,
        "classes": model["classes"],
        "label_type": model["label_type"],
        "views": model["views"],
        "per_view": model["per_view"],
        "image_size": model["image_size"],
        "model_id": identity,
        "calibrator": stale or (fitted.model_id if fitted else "none (temperature 1)"),
        "temperature": temperature,
        "thresholds": fitted.thresholds if fitted else None,
        "size_bytes": len(onnx_model),
        "model_trained_at": model["trained_at"],
    }
    logger.info("ONNX export: %d bytes, max |diff| %.1e", len(onnx_model), max_abs_diff)
    return onnx_model, report
