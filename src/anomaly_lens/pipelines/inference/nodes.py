"""Nodes of the ``inference`` pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from anomaly_lens.ml.calibration import Calibrator
from anomaly_lens.ml.data import build_image_cache
from anomaly_lens.ml.fitting import (
    Predictions,
    build_loaders,
    load_model,
    model_datasets,
    per_sample_table,
    predict,
    prediction_table,
    probability_columns,
    score,
)
from anomaly_lens.ml.identity import (
    REMADE_BY,
    StaleArtefactError,
    mismatch,
    model_identity,
    require_made_from,
)
from anomaly_lens.ml.inference import (
    DecisionRule,
    averaged_onnx_probabilities,
    onnx_metadata,
    onnx_session,
    predicted_objects,
)
from anomaly_lens.ml.metrics import json_safe
from anomaly_lens.ml.ood import OODScorer
from anomaly_lens.parameters import parse_block

logger = logging.getLogger(__name__)

NOT_CALIBRATED = (
    "no calibrator (run the calibration pipeline): probabilities are the model's own "
    "(temperature 1), decisions at inference.threshold"
)
NO_DETECTOR = (
    "no out-of-distribution detector (run the ood pipeline): ood_score is empty, no row is flagged"
)


def _label_classes(bundle: Mapping) -> list[str]:
    """The classes that have a label column: a multi-class model's ``normal`` has none."""
    return [c for c in bundle["classes"] if c != "normal" or bundle["label_type"] != "multiclass"]


def _decided(table: pd.DataFrame, bundle: Mapping, rule: DecisionRule) -> pd.DataFrame:
    """Decision per class, confidence and abstain flag beside the probabilities and the
    OOD columns."""
    classes = bundle["classes"]
    probs = table[probability_columns("prob", classes)].to_numpy(np.float64)
    flagged = table["out_of_distribution"].fillna(False).to_numpy(bool)
    decisions, confidence, abstain = rule.apply(probs, bundle["label_type"], flagged)
    for k, name in enumerate(classes):
        table[f"pred_{name}"] = decisions[:, k]
    table["predicted"] = [
        ";".join(c for c, d in zip(classes, row, strict=True) if d) for row in decisions
    ]
    table["confidence"] = confidence
    table["abstain"] = abstain
    table["model_trained_at"] = bundle["trained_at"]
    table["model_run_id"] = bundle["mlflow_run_id"]
    return table


@dataclass(frozen=True)
class Applied:
    """The model's identity and those of the newest artefacts that belong to it; a note
    says why an artefact is not applied (none, or made from another model)."""

    identity: str
    calibrator: Calibrator | None
    detector: OODScorer | None
    calibration_note: str | None
    detector_note: str | None


def _applied(model: dict, calibrator: dict | None, detector: OODScorer | None) -> Applied:
    """The newest calibrator and OOD detector where they were made from ``model``; one made
    from another model is not applied and said so, never reused silently."""
    identity = model_identity(model)
    fitted = Calibrator(**calibrator) if calibrator is not None else None
    calibration_note = NOT_CALIBRATED if fitted is None else None
    if fitted is not None and (stale := mismatch("calibrator", fitted.model_id, identity)):
        calibration_note, fitted = f"not applied: {stale}", None
    detector_note = NO_DETECTOR if detector is None else None
    made_from = getattr(detector, "model_id", None)  # detectors saved before identities
    if detector is not None and (stale := mismatch("OOD detector", made_from, identity)):
        detector_note, detector = f"not applied: {stale}", None
    for note in (calibration_note, detector_note):
        if note and note.startswith("not applied"):
            logger.warning(note)
    return Applied(identity, fitted, detector, calibration_note, detector_note)


def _ood_columns(
    detector: OODScorer | None, plain: Predictions | None, table: pd.DataFrame
) -> pd.DataFrame:
    """``ood_score`` and ``out_of_distribution`` per item (empty without a detector), from
    the logits and features of the items as they are (``plain``)."""
    if detector is None:
        flags = pd.array([pd.NA] * len(table), dtype="boolean")
        return table.assign(ood_score=np.nan, out_of_distribution=flags)
    scores, flags = detector.flag(plain.logits, plain.features)
    return table.assign(ood_score=scores, out_of_distribution=pd.array(flags, dtype="boolean"))


def _onnx_probabilities(
    onnx_model: bytes | None, fitted: Calibrator | None, model: dict, batches, tta: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and targets from the exported graph (its temperatures folded in);
    ``tta`` averages the logits over orientations of the views (``ml.tta``), as the
    PyTorch engine does."""
    if onnx_model is None:
        raise ValueError(
            "inference.engine=onnxruntime reads the exported model: run "
            "`kedro run --pipelines=export` first"
        )
    exported = onnx_metadata(onnx_model)
    require_made_from("ONNX graph", exported.get("model_id"), model_identity(model))
    temperature = fitted.temperature if fitted else 1.0
    if exported.get("temperature") != temperature:
        raise StaleArtefactError(
            f"The ONNX graph folds in the temperatures {exported.get('temperature')}, the "
            f"calibrator applied now has {temperature}: run `{REMADE_BY['ONNX graph']}`"
        )
    session = onnx_session(onnx_model)
    probs, targets = [], []
    for batch in batches:
        found = averaged_onnx_probabilities(
            session, batch.images, batch.view_mask, tta, model["label_type"]
        )
        probs.append(torch.from_numpy(found))
        targets.append(batch.labels)
    return torch.cat(probs), torch.cat(targets)


def predict_new_images(
    model: dict,
    calibrator: dict | None,
    ood_detector: OODScorer | None,
    onnx_model: bytes | None,
    samples: pd.DataFrame,
    manifest: pd.DataFrame,
    masks: pd.DataFrame,
    images: Mapping[str, Callable[[], bytes]],
    params: dict,
) -> tuple[pd.DataFrame, dict[str, bytes]]:
    """``predictions``: one row per sample (``level`` = ``sample``) and, for a per-view
    model, one per photo (``photo``; a sample's probabilities are its photos' mean); and
    ``prediction_masks``, PNGs of predicted masks (``<run>/<item>/<class>``) for models
    with a segmentation head, whose objects are in the ``boxes`` column (JSON).

    Columns: ``prob_<class>``, ``pred_<class>`` (decisions), ``predicted``,
    ``confidence``, ``ood_score``, ``out_of_distribution``, ``abstain``, the model's
    training time and MLflow run, and ``target_<class>`` where the images carry labels.
    Views are paired as in training; a missing view is masked as in training. With a
    calibrator, probabilities are temperature-scaled and multi-label decisions use its
    per-class thresholds; with an OOD detector, items above its threshold are flagged and
    abstain (a sample: its highest photo score).
    """
    settings = parse_block("inference", params)
    applied = _applied(model, calibrator, ood_detector)
    fitted, ood_detector = applied.calibrator, applied.detector
    label_classes = _label_classes(model)
    frame = samples.copy()
    for name in label_classes:  # classes the new images do not carry: label 0
        if f"label_{name}" not in frame:
            frame[f"label_{name}"] = 0
    cache = build_image_cache(
        frame,
        manifest,
        masks,
        lambda pid: images[pid](),
        views=model["views"],
        classes=label_classes,
        image_size=model["image_size"],
    )
    datasets = model_datasets(cache, {"inference": list(cache.sample_ids)}, model)
    loader = build_loaders(datasets, settings.batch_size, 0, False, 0)["inference"]
    network = load_model(model)
    if network.classifier is None:
        raise ValueError("A segmentation-only model predicts no classes: train with a class head")
    progress = tqdm(loader, desc="Predicting", unit="batch", total=len(loader))
    seg = None
    if settings.engine == "onnxruntime":  # the graph has no mask or feature output
        probs, item_targets = _onnx_probabilities(onnx_model, fitted, model, progress, settings.tta)
        plain = predict(network, loader, tta="none") if ood_detector else None
    else:
        plain = predict(network, progress, settings.tta)
        probs, item_targets, seg = plain.probs, plain.targets, plain.seg_probs
        if fitted is not None:
            probs = torch.from_numpy(fitted.apply(probs.numpy()))
    table = prediction_table(
        "inference", datasets["inference"], probs, item_targets, model["classes"]
    )
    table = _ood_columns(ood_detector, plain, table.drop(columns="split"))
    mask_pngs: dict[str, bytes] = {}
    if seg is not None:
        table["boxes"], pngs = predicted_objects(
            datasets["inference"],
            seg,
            label_classes,
            settings.mask_threshold,
            settings.min_box_area,
        )
        run = datetime.now(UTC).strftime("%Y-%m-%dT%H.%M.%S.%fZ")  # never overwrite a run
        mask_pngs = {f"{run}/{key}": png for key, png in pngs.items()}
    if model["per_view"]:
        samples_table = per_sample_table(
            table, model["classes"], highest=["ood_score", "out_of_distribution"]
        )
        samples_table.insert(1, "item_id", samples_table["sample_id"])
        table = pd.concat(
            [table.assign(level="photo"), samples_table.assign(level="sample")], ignore_index=True
        )
    else:
        table["level"] = "sample"
    thresholds = fitted.thresholds if fitted and fitted.thresholds else settings.threshold
    rule = DecisionRule(
        tuple(thresholds) if isinstance(thresholds, list) else thresholds, settings.min_confidence
    )
    table = _decided(table, model, rule).assign(model_id=applied.identity)
    if not (manifest["labels"].map(len) > 0).any():
        table = table.drop(columns=probability_columns("target", model["classes"]))
    logger.info(
        "Predicted %d samples (%d abstain), %d mask files",
        int((table["level"] == "sample").sum()),
        int(table.loc[table["level"] == "sample", "abstain"].sum()),
        len(mask_pngs),
    )
    return table, mask_pngs


def summarise_inference(
    predictions: pd.DataFrame,
    manifest: pd.DataFrame,
    quarantine: pd.DataFrame,
    model: dict,
    calibrator: dict | None,
    ood_detector: OODScorer | None,
    params: dict,
) -> dict:
    """``inference_report``: what was read, set aside and predicted, the decision and
    abstain rules, and, where the new images carry labels, the evaluation's metrics."""
    settings = parse_block("inference", params)
    applied = _applied(model, calibrator, ood_detector)
    fitted, ood_detector = applied.calibrator, applied.detector
    classes, label_type = model["classes"], model["label_type"]
    samples = predictions[predictions["level"] == "sample"]
    found = sorted({c for labels in manifest["labels"] for c in labels})
    report = {
        "input_dir": settings.input_dir,
        "model": {
            "identity": applied.identity,
            "trained_at": model["trained_at"],
            "mlflow_run_id": model["mlflow_run_id"],
            "classes": classes,
            "label_type": label_type,
            "views": model["views"],
            "per_view": model["per_view"],
        },
        "n_images": int(len(manifest)),
        "n_quarantined": int(len(quarantine)),
        "quarantine_by_reason": {
            str(k): int(v) for k, v in quarantine["reason"].value_counts().items()
        },
        "n_samples": int(len(samples)),
        "n_abstain": int(samples["abstain"].sum()),
        "predicted_by_class": {c: int(samples[f"pred_{c}"].sum()) for c in classes},
        "calibration": applied.calibration_note
        or {
            "model_id": fitted.model_id,
            "temperature": fitted.temperature,
            "thresholds": fitted.thresholds,
        },
        "out_of_distribution": applied.detector_note
        or {
            "model_id": ood_detector.model_id,
            "detector": ood_detector.name,
            "threshold": ood_detector.threshold,
            "flagged_samples": int(samples["out_of_distribution"].sum()),
        },
        "decision_rule": (
            "the most probable class"
            if label_type == "multiclass"
            else "each class with probability >= its calibrated threshold"
            if fitted and fitted.thresholds
            else f"each class with probability >= {settings.threshold}"
        ),
        "abstain_rule": f"confidence < {settings.min_confidence}, or out of distribution",
        "tta": settings.tta,
        "engine": settings.engine,
        "labels_found": found,
        "labels_unknown_to_model": [c for c in found if c not in classes],
    }
    if f"target_{classes[-1]}" in predictions:
        for level, part in predictions.groupby("level"):
            probs = torch.tensor(part[probability_columns("prob", classes)].to_numpy(np.float32))
            targets = torch.tensor(
                part[probability_columns("target", classes)].to_numpy(np.float32)
            )
            report[f"metrics_per_{level}"] = {
                "n": int(len(part)),
                **score(probs, targets, None, None, classes, label_type, 200, 0),
            }
    else:
        report["metrics"] = "the images carry no labels"
    return json_safe(report)
