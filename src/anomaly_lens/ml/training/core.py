"""The training core of train, cv, train_binary, subview and tune: checks, fit, the model bundle. No Kedro."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import lightning as L
import mlflow
import pandas as pd
import torch
from torch.utils.data import DataLoader

from anomaly_lens.ml.data.cache import ImageCache, MultiViewDataset
from anomaly_lens.ml.models import load_matching_weights
from anomaly_lens.ml.models.bundle import ModelBundle, saved_config
from anomaly_lens.ml.training.datasets import build_datasets, build_loaders, label_task
from anomaly_lens.ml.training.fit import FitResult, build_module, fit
from anomaly_lens.ml.training.module import TrainingModule
from anomaly_lens.ml.training.resume import run_fingerprint
from anomaly_lens.ml.training.settings import TrainerSettings, TrainSettings

logger = logging.getLogger(__name__)


def check_registered(cache: ImageCache, views: Sequence[str], settings: TrainSettings) -> None:
    """Refuse one mask for fused views whose pixels do not correspond."""
    if settings.model.task == "classification" or settings.per_view or len(views) < 2:
        return
    unregistered = cache.unregistered([cache.views.index(v) for v in views])
    if len(unregistered):
        raise ValueError(
            f"Segmentation of fused views needs registered views, but {len(unregistered)} of "
            f"{len(cache.sample_ids)} samples have views of different sizes (e.g. "
            f"{cache.sample_ids[unregistered[0]]}): set train.per_view=true (each view "
            "segmented alone) or train.model.task=classification"
        )


@dataclass
class TrainResult:
    """A trained model bundle (weights, the config that rebuilds them, classes, views, how
    its inputs are read, provenance) and its per-epoch history."""

    bundle: ModelBundle
    history: pd.DataFrame


def training_loaders(
    datasets: Mapping[str, MultiViewDataset], settings: TrainSettings
) -> dict[str, DataLoader]:
    """The loaders of ``train.*`` (batch size, workers, the balanced sampler, seed)."""
    trainer = settings.trainer
    return build_loaders(
        datasets, trainer.batch_size, trainer.num_workers, settings.balanced_sampler, settings.seed
    )


def train_on_cache(
    cache: ImageCache,
    ids_by_part: Mapping[str, Sequence[str]],
    settings: TrainSettings,
    callbacks: Sequence[L.Callback] = (),
) -> TrainResult:
    """Train a model on the ``train`` samples of an image cache, early-stopped on ``val``;
    no other part is read.

    ``settings.init_from`` copies the matching tensors of a saved bundle first (fine-tuning).
    """
    L.seed_everything(settings.seed, workers=True)
    label_type, targets, classes = label_task(cache.labels, cache.classes, settings.label_type)
    if settings.model.task == "segmentation" and "f1" in settings.trainer.monitor:
        raise ValueError(
            "A segmentation-only model has no class scores to monitor: set "
            "train.trainer.monitor=val_loss and train.trainer.mode=min"
        )
    views = settings.views or list(cache.views)
    check_registered(cache, views, settings)
    parts = {part: ids_by_part[part] for part in ("train", "val")}
    datasets = build_datasets(
        cache, parts, targets, views, settings.per_view, settings.augmentation, settings.seed
    )
    task = ModelTask.of(datasets["train"], classes, views, settings.per_view, label_type)
    started = time.monotonic()
    module, result = fit_model(
        settings,
        task,
        training_loaders(datasets, settings),
        run_fingerprint(settings, cache.fingerprint, parts),
        callbacks=callbacks,
    )
    seconds = time.monotonic() - started
    bundle = _bundle(module, result, task, settings, cache.images.shape[-1], seconds)
    return TrainResult(bundle, result.history)


def _bundle(
    module: TrainingModule,
    result: FitResult,
    task: ModelTask,
    settings: TrainSettings,
    image_size: int,
    seconds: float,
) -> ModelBundle:
    """The best weights with what rebuilds, identifies and serves them (``image_size``: the
    cache's square, which ``train.image_size=auto`` chose)."""
    pretrained = "imagenet" if settings.model.pretrained else None
    return ModelBundle(
        config=saved_config(module.model),
        state_dict=result.state_dict,
        classes=list(task.classes),
        label_type=task.label_type,
        views=list(task.views),
        per_view=task.per_view,
        image_size=image_size,
        resize=settings.resize,
        input_clahe=settings.augmentation.clahe,
        initial_weights=settings.model.weights_path or pretrained,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        mlflow_run_id=run.info.run_id if (run := mlflow.active_run()) else None,
        best_epoch=result.best_epoch,
        n_parameters=sum(p.numel() for p in module.model.parameters()),
        training_seconds=seconds,
    )


@dataclass(frozen=True)
class ModelTask:
    """What a model is built for: its classes, views, label type and the class
    frequencies of its training items (the loss' prior)."""

    classes: Sequence[str]
    views: Sequence[str]
    per_view: bool
    label_type: str
    frequencies: Sequence[float]

    @classmethod
    def of(
        cls, train: MultiViewDataset, classes, views, per_view: bool, label_type: str
    ) -> ModelTask:
        """The task of a training dataset: its items' class frequencies are the prior."""
        frequencies = train.targets[train.positions].mean(0).clip(1e-3, 1 - 1e-3).tolist()
        return cls(classes, views, per_view, label_type, frequencies)


def fit_model(
    settings: TrainSettings,
    task: ModelTask,
    loaders: Mapping[str, DataLoader],
    fingerprint: str,
    trainer: TrainerSettings | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> tuple[TrainingModule, FitResult]:
    """The training core every training pipeline shares (``train``, ``cv``,
    ``train_binary``, ``subview``, ``tune``), so every ``train.*`` setting reaches all of
    them: the module built from ``settings``, started from ``settings.init_from`` where
    set, fitted on ``loaders["train"]`` (early-stopped on ``val`` where there is one) with
    ``trainer`` (default ``settings.trainer``), resumable with ``settings.resume``."""
    module = build_module(
        settings, task.classes, task.views, task.per_view, task.label_type, task.frequencies
    )
    if settings.init_from:
        source = torch.load(settings.init_from, map_location="cpu", weights_only=True)
        copied = load_matching_weights(module.model, source["state_dict"])
        logger.info(
            "Fine-tuning from %s: %d tensors loaded, %d new (%s)",
            settings.init_from,
            len(copied["loaded"]),
            len(copied["skipped"]),
            ", ".join(copied["skipped"][:6]),
        )
    result = fit(
        module,
        loaders["train"],
        loaders.get("val"),
        trainer or settings.trainer,
        settings.resume,
        callbacks,
        fingerprint=fingerprint,
    )
    return module, result
