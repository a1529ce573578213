"""Nodes of the ``train`` pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np
import pandas as pd

from anomaly_lens.ml.data.cache import (
    ImageCache,
    build_image_cache,
    cache_fingerprint,
    chosen_image_size,
)
from anomaly_lens.ml.data.inspection import squashed
from anomaly_lens.ml.data.splitting import ids_by_split, split_identity
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.ml.training.core import train_on_cache
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
    settings = parse_block(TrainSettings, params)
    image_size = chosen_image_size(settings.image_size, manifest, settings.max_image_size)
    cache = build_image_cache(
        samples,
        manifest,
        masks,
        lambda pid: raw_images[pid](),
        views=views,
        classes=class_names,
        image_size=image_size,
        resize=settings.resize,
    )
    shape = (*cache.images.shape[:2], image_size, settings.resize)
    logger.info("Image cache: %s samples x %s views at %d px (%s)", *shape)
    if settings.image_size == "auto":
        logger.info(
            "train.image_size=auto: %d px, the images' median shorter side (%d px) rounded "
            "down to a multiple of 32, at most train.max_image_size (%d)",
            image_size,
            int(manifest[["width", "height"]].min(axis=1).median()),
            settings.max_image_size,
        )
    _warn_about_geometry(manifest, image_size, settings.resize)
    return cache.arrays()


def _warn_about_geometry(manifest: pd.DataFrame, image_size: int, resize: str) -> None:
    """Say where reading the images at ``image_size`` changes what the model sees."""
    wide = int(squashed(manifest).sum())
    if resize == "stretch" and wide:
        logger.warning(
            "%d of %d images are wider or taller than 3:2 and are squashed into the square: "
            "train.resize=pad keeps their aspect ratio",
            wide,
            len(manifest),
        )
    large = int((manifest[["width", "height"]].min(axis=1) > 4 * image_size).sum())
    if large:
        logger.warning(
            "%d images are over 4x train.image_size (%d px) on their shorter side: a defect "
            "of a few pixels shrinks below one; a larger image_size keeps it",
            large,
            image_size,
        )


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
    size = chosen_image_size(settings.image_size, manifest, settings.max_image_size)
    expected = cache_fingerprint(samples, manifest, views, class_names, size, settings.resize)
    if cache.fingerprint != expected:
        raise ValueError(
            "The image cache was built from other inputs: run the `train` pipeline "
            "from its start (the cache_images node) to rebuild it"
        )
    result = train_on_cache(cache, ids_by_split(splits), settings)
    return replace(result.bundle, split_id=split_identity(splits)), result.history
