"""The task a model learns from a cache (label type, targets, classes) and its datasets and loaders. No Kedro."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from torch.utils.data import DataLoader

from anomaly_lens.ml.data.cache import (
    EpochSampler,
    ImageCache,
    MultiViewDataset,
    augmentation,
    balanced_weights,
    collate,
)
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.ml.training.settings import AugmentationSettings

logger = logging.getLogger(__name__)


def label_task(
    labels: np.ndarray, cache_classes: Sequence[str], requested: str = "auto"
) -> tuple[str, np.ndarray, list[str]]:
    """Label type, one target row per label row, and the class names in target order.

    ``auto``: ``multilabel`` when any sample has two labels, else ``multiclass``, whose
    targets are one-hot with a leading ``normal`` class.
    """
    label_type = requested
    if requested == "auto":
        label_type = "multilabel" if (labels.sum(1) > 1).any() else "multiclass"
    return label_type, task_targets(labels, label_type), task_classes(cache_classes, label_type)


def task_targets(labels: np.ndarray, label_type: str) -> np.ndarray:
    """Multi-hot targets, or one-hot with a leading ``normal`` class for multi-class data."""
    if label_type == "multilabel":
        return labels.astype(np.float32)
    return np.column_stack([labels.sum(1) == 0, labels]).astype(np.float32)


def task_classes(cache_classes: Sequence[str], label_type: str) -> list[str]:
    """Class names in target order: a leading ``normal`` for multi-class."""
    return (["normal"] if label_type == "multiclass" else []) + list(cache_classes)


def build_datasets(
    cache: ImageCache,
    ids_by_part: Mapping[str, Sequence[str]],
    targets: np.ndarray,
    views: Sequence[str],
    per_view: bool,
    augmentation_settings: AugmentationSettings,
    seed: int,
    training_part: str = "train",
) -> dict[str, MultiViewDataset]:
    """One dataset per part (e.g. train/val/test); only ``training_part`` is augmented.

    Samples with none of the views are left out and logged.
    """
    view_index = [cache.views.index(v) for v in views]
    datasets = {}
    for part, ids in ids_by_part.items():
        chosen = (
            augmentation_settings
            if part == training_part
            else augmentation_settings.at_evaluation()
        )
        datasets[part] = dataset = MultiViewDataset(
            cache,
            cache.positions(list(ids)),
            targets=targets,
            view_index=view_index,
            per_view=per_view,
            transform=augmentation(
                chosen.preset,
                1 if per_view else len(view_index),
                chosen.clahe,
                seed=seed,
                rotate90=chosen.rotate90,
            ),
            modality_dropout=chosen.modality_dropout,
            seed=seed,
        )
        if dataset.without_views:
            logger.warning(
                "%s: %d samples have none of the views %s and are left out: %s",
                part,
                len(dataset.without_views),
                list(views),
                ", ".join(dataset.without_views[:5]),
            )
    return datasets


def model_datasets(
    cache: ImageCache, ids_by_part: Mapping[str, Sequence[str]], bundle: ModelBundle
) -> dict[str, MultiViewDataset]:
    """A trained model's items per part, as the model reads them (its views, per view or
    not, its input CLAHE), without augmentation; targets in its label type."""
    return build_datasets(
        cache,
        ids_by_part,
        task_targets(cache.labels, bundle.label_type),
        bundle.views,
        bundle.per_view,
        AugmentationSettings(preset="none", clahe=bundle.input_clahe),
        seed=0,
        training_part="",
    )


def build_loaders(
    datasets: Mapping[str, MultiViewDataset],
    batch_size: int,
    num_workers: int,
    balanced: bool,
    seed: int,
    training_part: str = "train",
) -> dict[str, DataLoader]:
    """Batches of each part; the training part drawn by the epoch-seeded (optionally
    balanced) sampler, the others in order."""
    samplers = {}
    if training_part in datasets:
        train = datasets[training_part]
        weights = balanced_weights(train.targets[train.positions]) if balanced else None
        samplers[training_part] = EpochSampler(len(train), seed, weights)
    return {
        part: DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=samplers.get(part),
            collate_fn=collate,
            num_workers=num_workers,
        )
        for part, dataset in datasets.items()
    }
