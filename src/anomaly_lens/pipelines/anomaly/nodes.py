"""Nodes of the ``anomaly`` pipeline: a detector learnt from the normal train images only,
its threshold set on validation, scored on validation and test (never fitted on them)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from anomaly_lens.ml.anomaly.detector import AnomalyDetector
from anomaly_lens.ml.anomaly.evaluation import evaluate_detector, split_items
from anomaly_lens.ml.anomaly.fitting import fit_on_split
from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.data.splitting import split_identity
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.training.settings import TrainSettings
from anomaly_lens.parameters import AnomalyParams, parse_block
from anomaly_lens.tracking import as_mlflow_metrics

logger = logging.getLogger(__name__)


def fit_anomaly_detector(
    image_cache: dict, splits: pd.DataFrame, params: dict, train_params: dict
) -> AnomalyDetector:
    """Fit ``anomaly.method`` on a seeded draw of the train images of normal samples (no
    label is read beyond "normal"); the threshold from the val samples' scores."""
    return fit_on_split(
        ImageCache.from_arrays(image_cache),
        splits,
        parse_block(AnomalyParams, params),
        parse_block(TrainSettings, train_params).resize,
    )


def evaluate_anomaly_detector(
    detector: AnomalyDetector, image_cache: dict, splits: pd.DataFrame, params: dict
) -> tuple[pd.DataFrame, dict, dict]:
    """``anomaly_scores`` (every val and test image), ``anomaly_metrics`` (image AUROC, AUPR
    and F1 at the threshold per sample and per image, with group-bootstrap intervals; pixel
    AUROC and AUPRO) and the test headline for MLflow."""
    settings = parse_block(AnomalyParams, params)
    if detector.split_id != split_identity(splits):
        raise ValueError(
            "The anomaly detector was fitted on another split (its train images may be in "
            "this test split): run `kedro run --pipelines=anomaly`"
        )
    cache = ImageCache.from_arrays(image_cache)
    parts = {part: split_items(cache, splits, part, detector.views) for part in ("val", "test")}
    scores, measured = evaluate_detector(
        detector, parts, settings.bootstrap_rounds, settings.seed, settings.aupro_fpr_limit
    )
    report = {
        "method": detector.method,
        "backbone": detector.backbone,
        "layers": list(detector.settings.layers),
        "n_train_images": detector.n_train_images,
        "threshold": detector.threshold,
        "threshold_rule": detector.threshold_rule,
        "split_id": detector.split_id,
        **measured,
    }
    test = measured["test"]
    headline = {f"test_image_{k}": test["per_sample"].get(k) for k in ("auroc", "aupr", "f1")}
    headline |= {f"test_{k}": test["pixel"].get(k) for k in ("pixel_auroc", "aupro")}
    logger.info("Anomaly detection on test: %s", headline)
    finite = {k: v for k, v in headline.items() if isinstance(v, float) and np.isfinite(v)}
    return scores, json_safe(report), as_mlflow_metrics(finite)


def plot_anomaly_maps(
    detector: AnomalyDetector, image_cache: dict, splits: pd.DataFrame, params: dict
) -> Figure:
    """Test images (anomalous ones with a mask first, then normal ones, a seeded draw) with
    their anomaly map, the mask's outline and the image score against the threshold."""
    settings = parse_block(AnomalyParams, params)
    items = split_items(ImageCache.from_arrays(image_cache), splits, "test", detector.views)
    rng = np.random.default_rng(settings.seed)
    with_mask = np.flatnonzero(items.masks.reshape(len(items.masks), -1).any(1))
    normal = np.flatnonzero(~items.anomalous)
    shown = np.concatenate(
        [rng.permutation(with_mask)[:4], rng.permutation(normal)[: 6 - min(4, len(with_mask))]]
    ).astype(int)
    scores, maps = detector.score(items.images[shown])
    top = float(maps.max()) if len(maps) else 1.0  # one colour scale: normal maps stay cool
    fig = Figure(figsize=(2.2 * max(len(shown), 1), 2.6), layout="tight")
    for axes, i, score, heat in zip(
        np.atleast_1d(fig.subplots(1, max(len(shown), 1))), shown, scores, maps, strict=False
    ):
        axes.imshow(items.images[i], cmap="gray")
        axes.imshow(heat, cmap="jet", alpha=0.4, vmin=0.0, vmax=top)
        if items.masks[i].any():
            axes.contour(items.masks[i], levels=[0.5], colors="white", linewidths=0.8)
        verdict = "anomalous" if score > detector.threshold else "normal"
        axes.set_title(f"{items.sample_ids[i]}\n{score:.3g}: {verdict}", fontsize=7)
        axes.axis("off")
    return fig
