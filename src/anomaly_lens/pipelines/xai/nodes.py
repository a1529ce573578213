"""Nodes of the ``xai`` pipeline: pick samples, attribute, score against the masks.

Samples come from the evaluation split named by ``xai.split`` (the test split by default;
nothing is fitted on them). A per-view model's sample is explained through all its photos,
each photo's own score, so that the shares per view say which photo carries a decision.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from anomaly_lens.ml.anomaly.detector import AnomalyDetector
from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.data.splitting import split_identity
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.evaluation.predictions import per_sample_table
from anomaly_lens.ml.explanation.explained import explain_pairs
from anomaly_lens.ml.explanation.scores import headline, map_localisation, score_attributions
from anomaly_lens.ml.explanation.selection import label_rows, select_pairs
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.parameters import XaiParams, parse_block
from anomaly_lens.pipelines.xai.report import render
from anomaly_lens.tracking import as_mlflow_metrics

logger = logging.getLogger(__name__)


def select_explained(
    predictions: pd.DataFrame,
    model: ModelBundle,
    image_cache: dict,
    splits: pd.DataFrame,
    params: dict,
) -> pd.DataFrame:
    """``xai_selection``: per class (``normal`` aside), samples predicted right, wrong
    (missed first, then false alarms) and most confidently; one row per sample and class,
    at most ``xai.max_samples`` rows, the classes taking turns. For a segmentation-only
    model (no class scores): samples that carry each class."""
    settings = parse_block(XaiParams, params)
    classes, part = model.classes, settings.split
    if "split" not in predictions:  # no class scores: a segmentation-only model
        ids = splits.loc[splits["split"] == part, "sample_id"].tolist()
        rows = label_rows(ImageCache.from_arrays(image_cache), ids, classes)
    else:
        rows = predictions[predictions["split"] == part]
        if model.per_view:
            rows = per_sample_table(rows, classes, sort=True)
    if rows.empty:
        raise ValueError(f"No {part} predictions to explain: run `train` first")
    selection = select_pairs(
        rows, classes, model.label_type, settings.per_class, settings.max_samples,
        settings.seed,
    )  # fmt: skip
    logger.info("Explaining %d (sample, class) pairs of the %s split", len(selection), part)
    return selection


def explain_selection(
    model: ModelBundle, image_cache: dict, selection: pd.DataFrame, params: dict
) -> dict:
    """``xai_attributions``: every configured method's maps of the selected pairs (one per
    photo of a per-view model), the inputs and masks they are scored against, deletion
    curves (the method's order and a random one), cross-attention maps and timings."""
    settings = parse_block(XaiParams, params)
    return explain_pairs(model, ImageCache.from_arrays(image_cache), selection, settings)


def score_explanations(
    attributions: dict, raw_metadata: dict | None, params: dict
) -> tuple[dict, dict]:
    """``xai_metrics`` and their headline figures for MLflow: per method and class, the
    localisation scores, deletion AUC and random baselines; the attribution share per
    view; intensity and distance profiles (Integrated Gradients); seconds per image; the
    ground-truth checks where the data's metadata says which view shows which type."""
    settings = parse_block(XaiParams, params)
    visible = (raw_metadata or {}).get("visible_in_views")
    metrics = score_attributions(attributions, visible, settings.checks, settings.seed)
    return json_safe(metrics), as_mlflow_metrics(headline(metrics))


def map_explained_anomalies(
    attributions: dict, detector: AnomalyDetector | None, splits: pd.DataFrame, params: dict
) -> dict:
    """``xai_anomaly_maps``: the one-class detector's maps of the explained images (as the
    model read them), scored against the masks like the attributions; not applied where
    ``anomaly`` never ran, or its detector learnt another split or another image size."""
    settings = parse_block(XaiParams, params)
    images = np.round(attributions["images"] * 255).astype(np.uint8)
    reason = None
    if detector is None:
        reason = "no anomaly detector: run `kedro run --pipelines=anomaly`"
    elif detector.split_id != split_identity(splits):
        reason = "the anomaly detector learnt another split: run `kedro run --pipelines=anomaly`"
    elif detector.image_size != images.shape[-1]:
        reason = (
            f"the anomaly detector reads {detector.image_size} px, the model {images.shape[-1]} px"
        )
    if reason is not None:
        return {"applied": False, "reason": reason}
    present = attributions["view_mask"].astype(bool)
    maps = np.zeros(images.shape, np.float32)
    maps[present] = detector.score(images[present])[1]
    return {
        "applied": True,
        "method": detector.method,
        "threshold": detector.threshold,
        "maps": maps,
        "quality": map_localisation(attributions, maps, settings.seed),
    }


def render_xai_report(
    attributions: dict,
    metrics: dict,
    subview_report: dict | None,
    anomaly_maps: dict,
    params: dict,
) -> str:
    """``xai_report``: the self-contained HTML page (``report.render``)."""
    settings = parse_block(XaiParams, params)
    return render(attributions, metrics, subview_report, settings, anomaly_maps)
