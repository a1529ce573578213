"""Nodes of the ``inference`` pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from anomaly_lens.ml.anomaly.detector import AnomalyDetector
from anomaly_lens.ml.evaluation.drift import DriftReference
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.evaluation.ood import OODScorer
from anomaly_lens.ml.evaluation.predictions import probability_columns, score
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.ml.serving.identity import mismatch, model_identity
from anomaly_lens.ml.serving.predictor import Predictor, ServingSettings
from anomaly_lens.parameters import parse_block

logger = logging.getLogger(__name__)


def predict_new_images(
    model: ModelBundle,
    calibrator: dict | None,
    ood_detector: OODScorer | None,
    anomaly_detector: AnomalyDetector | None,
    onnx_model: bytes | None,
    samples: pd.DataFrame,
    manifest: pd.DataFrame,
    masks: pd.DataFrame,
    images: Mapping[str, Callable[[], bytes]],
    params: dict,
) -> tuple[pd.DataFrame, dict[str, bytes], dict[str, bytes]]:
    """``predictions`` of the model's predictor (``ml.serving.Predictor``: its own
    calibrator, OOD and one-class detectors, the ``inference`` decision rule): one row per
    sample (``level`` ``sample``) and, for a per-view model, one per photo (``photo``);
    ``prediction_masks``, PNGs of predicted masks (``<run>/<item>/<class>``) for models with
    a segmentation head, whose objects are in the ``boxes`` column (JSON); and
    ``prediction_anomaly_maps``, each photo's one-class map (``<run>/<item>``; 128 is the
    detector's threshold, ``AnomalyDetector.map_png``). Target columns only where the new
    images carry labels."""
    settings = parse_block(ServingSettings, params)
    predictor = Predictor.of(model, calibrator, ood_detector, settings, anomaly_detector)
    progress = partial(tqdm, desc="Predicting", unit="batch")
    table, pngs, maps = predictor.predict_images(
        samples, manifest, masks, lambda pid: images[pid](), onnx_model, progress
    )
    run = datetime.now(UTC).strftime("%Y-%m-%dT%H.%M.%S.%fZ")  # never overwrite a run
    if not (manifest["labels"].map(len) > 0).any():
        table = table.drop(columns=probability_columns("target", model.classes))
    sample_rows = table["level"] == "sample"
    logger.info(
        "Predicted %d samples (%d abstain, %d anomalous), %d mask files",
        int(sample_rows.sum()),
        int(table.loc[sample_rows, "abstain"].sum()),
        int(table.loc[sample_rows, "anomalous"].fillna(False).sum()),
        len(pngs),
    )
    anomaly_pngs = {f"{run}/{item}": predictor.anomaly.map_png(heat) for item, heat in maps.items()}
    return table, {f"{run}/{key}": png for key, png in pngs.items()}, anomaly_pngs


def measure_drift(
    model: ModelBundle,
    drift_reference: DriftReference | None,
    samples: pd.DataFrame,
    manifest: pd.DataFrame,
    masks: pd.DataFrame,
    images: Mapping[str, Callable[[], bytes]],
    params: dict,
) -> dict:
    """How far the new images are from the model's training images (``DriftReference``:
    KID on frozen encoder features, flagged above what validation resamples of the same
    size reach), read as the model reads them; a reference of another model is not used."""
    if drift_reference is None:
        return {"applied": False, "note": "no drift reference: run `kedro run --pipelines=ood`"}
    stale = mismatch("drift reference", drift_reference.model_id, model_identity(model))
    if stale:
        return {"applied": False, "note": stale}
    predictor = Predictor.of(model, None, None, parse_block(ServingSettings, params))
    cache = predictor.prepare(samples, manifest, masks, lambda pid: images[pid]())
    views = [cache.views.index(v) for v in model.views]
    present = cache.images[:, views][cache.view_mask[:, views]]
    if len(present) < 2:
        return {"applied": False, "note": "fewer than two images: no distance to measure"}
    found = drift_reference.measure(present)
    logger.info("Drift against the training images: %s", found)
    return {"applied": True, **found}


def _metrics(predictions: pd.DataFrame, classes: list[str], label_type: str) -> dict:
    """The evaluation's metrics of labelled new images, per level (samples; photos)."""
    found = {}
    for level, part in predictions.groupby("level"):
        probs, targets = (
            torch.tensor(part[probability_columns(kind, classes)].to_numpy(np.float32))
            for kind in ("prob", "target")
        )
        found[f"metrics_per_{level}"] = {
            "n": int(len(part)),
            **score(probs, targets, None, None, classes, label_type, 200, 0),
        }
    return found


def _anomaly_summary(samples: pd.DataFrame, predictor: Predictor) -> dict:
    """How many samples the one-class detector calls anomalous, or why it was not applied."""
    if predictor.anomaly is None:
        return {"applied": False, "note": predictor.anomaly_note}
    return {"applied": True, "n_anomalous": int(samples["anomalous"].fillna(False).sum())}


def summarise_inference(
    predictions: pd.DataFrame,
    manifest: pd.DataFrame,
    quarantine: pd.DataFrame,
    model: ModelBundle,
    calibrator: dict | None,
    ood_detector: OODScorer | None,
    anomaly_detector: AnomalyDetector | None,
    drift: dict,
    params: dict,
) -> dict:
    """``inference_report``: what was read, set aside and predicted, the predictor (the
    model and each artefact applied, with their identities; the rules), how far the images
    are from the training images (``drift``), and, where the new images carry labels, the
    evaluation's metrics."""
    settings = parse_block(ServingSettings, params)
    predictor = Predictor.of(model, calibrator, ood_detector, settings, anomaly_detector)
    classes = model.classes
    samples = predictions[predictions["level"] == "sample"]
    found = sorted({c for labels in manifest["labels"] for c in labels})
    report = {
        "input_dir": settings.input_dir,
        **predictor.describe(),
        "n_images": int(len(manifest)),
        "n_quarantined": int(len(quarantine)),
        "quarantine_by_reason": {
            str(k): int(v) for k, v in quarantine["reason"].value_counts().items()
        },
        "n_samples": int(len(samples)),
        "n_abstain": int(samples["abstain"].sum()),
        "flagged_out_of_distribution": int(samples["out_of_distribution"].sum()),
        "anomaly": _anomaly_summary(samples, predictor),
        "predicted_by_class": {c: int(samples[f"pred_{c}"].sum()) for c in classes},
        "labels_found": found,
        "labels_unknown_to_model": [c for c in found if c not in classes],
        "drift": drift,
    }
    if f"target_{classes[-1]}" not in predictions:
        return json_safe({**report, "metrics": "the images carry no labels"})
    return json_safe(report | _metrics(predictions, classes, model.label_type))
