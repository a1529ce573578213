"""Fitting a detector on one split's normal train images and setting its threshold on the
split's validation images: the one procedure behind the ``anomaly`` pipeline and the
cross-validated gate. No Kedro."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from anomaly_lens.ml.anomaly.detector import AnomalyDetector, AnomalyMethodSettings
from anomaly_lens.ml.anomaly.evaluation import choose_threshold, per_sample, split_items
from anomaly_lens.ml.anomaly.settings import AnomalyParams
from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.data.splitting import split_identity

logger = logging.getLogger(__name__)


def fit_on_split(
    cache: ImageCache, splits: pd.DataFrame, settings: AnomalyParams, resize: str
) -> AnomalyDetector:
    """``settings.method`` fitted on a seeded draw of the ``train`` images of normal samples
    (no label is read beyond "normal"), its threshold set on the ``val`` samples' scores
    (a sample scores its highest view); ``resize``: how the cache squared the images."""
    train = split_items(cache, splits, "train", cache.views)
    normal = np.flatnonzero(~train.anomalous)
    if not len(normal):
        raise ValueError("The train split has no normal image to learn normality from")
    rng = np.random.default_rng(settings.seed)
    chosen = np.sort(rng.choice(normal, min(settings.max_train_images, len(normal)), False))
    method = AnomalyMethodSettings(
        **settings.model_dump(
            include={"layers", "neighbours", "coreset_ratio", "padim_features", "seed"}
        )
    )
    detector = AnomalyDetector(
        settings.method,
        settings.backbone,
        method,
        image_size=cache.images.shape[-1],
        resize=resize,
        views=list(cache.views),
        split_id=split_identity(splits),
    ).fit(train.images[chosen], settings.batch_size)
    val = split_items(cache, splits, "val", cache.views)
    samples = per_sample(detector.score(val.images, settings.batch_size)[0], val)
    detector.threshold, detector.threshold_rule = choose_threshold(
        samples["score"].to_numpy(),
        samples["anomalous"].to_numpy(),
        settings.threshold,
        settings.normal_kept,
    )
    logger.info(
        "%s fitted on %d normal train images; threshold %.4g (%s)",
        settings.method,
        len(chosen),
        detector.threshold,
        detector.threshold_rule,
    )
    return detector
