"""Nodes of the ``train`` pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from anomaly_lens.ml.data.cache import ImageCache, build_image_cache, cache_fingerprint
from anomaly_lens.ml.data.splitting import ids_by_split, units_of
from anomaly_lens.ml.evaluation import baseline
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.evaluation.predictions import Scoring
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.ml.training.core import train_on_cache
from anomaly_lens.ml.training.datasets import build_datasets, label_task
from anomaly_lens.ml.training.settings import TrainSettings
from anomaly_lens.parameters import parse_block

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
    image_size = parse_block(TrainSettings, params).image_size
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


def train_model(
    image_cache: dict,
    samples: pd.DataFrame,
    manifest: pd.DataFrame,
    splits: pd.DataFrame,
    class_names: list[str],
    views: list[str],
    params: dict,
) -> tuple[ModelBundle, pd.DataFrame]:
    """Fit with Lightning; return the best checkpoint's model bundle and the epoch history."""
    settings = parse_block(TrainSettings, params)
    cache = ImageCache.from_arrays(image_cache)
    expected = cache_fingerprint(samples, manifest, views, class_names, settings.image_size)
    if cache.fingerprint != expected:
        raise ValueError(
            "The image cache was built from other inputs: run the `train` pipeline "
            "from its start (the cache_images node) to rebuild it"
        )
    result = train_on_cache(cache, ids_by_split(splits), settings)
    return result.bundle, result.history


def evaluate_baseline(image_cache: dict, splits: pd.DataFrame, params: dict) -> dict:
    """Random forest on hand-crafted per-view features, fitted on train, scored like the model
    (on the same items: samples, or single views with ``per_view``)."""
    settings = parse_block(TrainSettings, params)
    cache = ImageCache.from_arrays(image_cache)
    label_type, targets, classes = label_task(cache.labels, cache.classes, settings.label_type)
    views = settings.views or list(cache.views)
    datasets = build_datasets(
        cache,
        ids_by_split(splits),
        targets,
        views,
        settings.per_view,
        settings.augmentation,
        settings.seed,
    )
    scoring = Scoring(settings.bootstrap_rounds, settings.seed, units_of(splits))
    report = baseline.forest_report(datasets, label_type, classes, settings.baseline_trees, scoring)
    return json_safe({**report, "views": views, "per_view": settings.per_view})
