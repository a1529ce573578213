"""Datasets, loaders, fitting, prediction and scoring on an image cache.

What the ``train``, ``evaluate`` and ``cv`` pipelines share; no Kedro. Functions take the
values they need, not a pipeline's parameter block.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning as L
import mlflow
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint
from torch.utils.data import DataLoader

from anomaly_lens.ml.batch import Batch
from anomaly_lens.ml.data import (
    EpochSampler,
    ImageCache,
    MultiViewDataset,
    augmentation,
    balanced_weights,
    collate,
)
from anomaly_lens.ml.metrics import (
    PIXEL_COUNTS,
    bootstrap_interval,
    classification_metrics,
    segmentation_stats,
    segmentation_summary,
)
from anomaly_lens.ml.models import ModelConfig, create_model, load_matching_weights
from anomaly_lens.ml.settings import AugmentationSettings, TrainerSettings, TrainSettings
from anomaly_lens.ml.training import AnomalyModule, probabilities
from anomaly_lens.ml.tta import orientations

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
    cache: ImageCache, ids_by_part: Mapping[str, Sequence[str]], bundle: Mapping
) -> dict[str, MultiViewDataset]:
    """A trained model's items per part, as the model reads them (its views, per view or
    not, its input CLAHE), without augmentation; targets in its label type."""
    return build_datasets(
        cache,
        ids_by_part,
        task_targets(cache.labels, bundle["label_type"]),
        bundle["views"],
        bundle["per_view"],
        AugmentationSettings(preset="none", clahe=bundle["input_clahe"]),
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


PER_VIEW_SLOT = "any"  # the one view slot of a per-view model (it sees every view alike)


def build_module(
    settings: TrainSettings,
    classes: Sequence[str],
    views: Sequence[str],
    per_view: bool,
    label_type: str,
    class_frequencies: Sequence[float],
) -> AnomalyModule:
    """A fresh ``AnomalyModule`` from the training settings for ``classes`` seen through
    ``views``."""
    model_config = ModelConfig(
        **settings.model.model_dump(),
        num_classes=len(classes),
        views=[PER_VIEW_SLOT] if per_view else list(views),
        label_type=label_type,
    )
    return AnomalyModule(
        model_config,
        settings.loss,
        settings.optimizer,
        list(class_frequencies),
        settings.freeze_encoder_epochs,
        settings.seed,
        settings.mixing,
        settings.channels_last,
    )


def nested_run(name: str, params: Mapping[str, Any] | None = None, **tags: Any):
    """A nested MLflow run under the active one, with ``params`` and ``tags`` logged; a
    no-op context without an active run (the library used without tracking)."""
    if mlflow.active_run() is None:
        return contextlib.nullcontext()
    run = mlflow.start_run(run_name=name, nested=True)
    if params:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    if tags:
        mlflow.set_tags(tags)
    return run


@dataclass
class FitResult:
    """The best checkpoint's weights and epoch, and the per-epoch metrics."""

    state_dict: dict[str, torch.Tensor]
    best_epoch: int
    history: pd.DataFrame


class _History(L.Callback):
    """Per-epoch metrics as rows, also logged to the active MLflow run with the epoch as
    step and written to ``path`` beside ``last.ckpt``, so that a resumed run's history
    starts with the epochs of ``restored`` (read back from ``path``)."""

    def __init__(self, path: Path, restored: Sequence[dict] = ()):
        self.path = path
        self.rows: list[dict] = list(restored)

    def on_train_start(self, trainer, module):
        if mlflow.active_run() is not None and trainer.is_global_zero:
            for row in self.rows:  # a resumed run's MLflow curves start at epoch 0 too
                mlflow.log_metrics(_metrics_of(row), step=row["epoch"])

    def on_train_epoch_end(self, trainer, module):  # runs after the epoch's validation
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if not metrics:  # the checkpointed epoch, replayed on resume: its row is restored
            return
        self.rows.append({"epoch": trainer.current_epoch} | metrics)
        if trainer.is_global_zero:
            pd.DataFrame(self.rows).to_csv(self.path, index=False)
            if mlflow.active_run() is not None:
                mlflow.log_metrics(metrics, step=trainer.current_epoch)


def _metrics_of(row: dict) -> dict[str, float]:
    return {k: v for k, v in row.items() if k != "epoch" and not pd.isna(v)}


def _restored_history(path: Path, last_epoch: int) -> list[dict]:
    """The rows of ``path`` up to the checkpointed ``last_epoch`` (none if it is absent)."""
    if not path.exists():
        return []
    rows = pd.read_csv(path)
    return rows[rows["epoch"] <= last_epoch].to_dict("records")


def _ended(checkpoint: dict, settings: TrainerSettings) -> bool:
    """Whether the run saved in ``checkpoint`` had ended under ``settings``: its last epoch
    was the last allowed, or early stopping had run out of patience (epochs without
    improvement; an improving epoch resets the count to 0, hence at least 1)."""
    stopping = [v for k, v in checkpoint["callbacks"].items() if k.startswith("EarlyStopping")]
    waited = stopping[0]["wait_count"] if stopping else 0
    out_of_patience = waited >= max(settings.patience, 1)
    return checkpoint["epoch"] + 1 >= settings.max_epochs or out_of_patience


# Where and how a run is placed and shown, and how its report is sampled: neither what it
# learns nor how it reads its test items.
PLACEMENT_AND_DISPLAY = {
    "resume": True,
    "bootstrap_rounds": True,
    "baseline_trees": True,
    "trainer": {
        "progress_bar",
        "num_workers",
        "checkpoint_dir",
        "devices",
        "num_nodes",
        "strategy",
    },
}
# What may differ between a run and its resume: the above, how it is stopped and how it is
# evaluated. Everything else (model, loss, optimiser, schedule length, augmentation, seed…)
# must match, or the resumed run is not the run it claims to continue.
RESUMABLE_CHANGES = {
    **PLACEMENT_AND_DISPLAY,
    "tta": True,
    "trainer": PLACEMENT_AND_DISPLAY["trainer"] | {"patience"},
}


def run_fingerprint(
    settings: TrainSettings, cache_fingerprint: str, parts: Mapping[str, Sequence[str]]
) -> str:
    """A digest of what a run learns from: its settings (bar ``RESUMABLE_CHANGES``), the
    image cache and the items of each part (``train``, ``val``)."""
    payload = {
        "settings": settings.model_dump(mode="json", exclude=RESUMABLE_CHANGES),
        "cache": cache_fingerprint,
        "parts": {part: list(items) for part, items in sorted(parts.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _check_same_run(recorded: Path, fingerprint: str | None, last: Path) -> None:
    """Refuse to resume ``last`` for a run with another ``fingerprint`` than its own."""
    if fingerprint is None:
        return
    if not recorded.exists():
        logger.warning("%s has no record of the run that wrote it; resuming as asked", last)
    elif recorded.read_text() != fingerprint:
        raise ValueError(
            f"{last} was written by a run with other training settings, data or "
            "train/val items (e.g. other cv folds): resume with the parameters it was started "
            "with, or run without train.resume (a fresh run replaces it)"
        )


def fit(
    module: AnomalyModule,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    trainer_settings: TrainerSettings,
    resume: bool = False,
    callbacks: Sequence[L.Callback] = (),
    fingerprint: str | None = None,
) -> FitResult:
    """Lightning fit with early stopping on ``trainer_settings.monitor`` (and any further
    ``callbacks``, e.g. a tuner's pruning).

    Checkpoints go to ``checkpoint_dir``: the best one (returned) and the last one, which
    ``resume`` continues from, with the epochs' metrics (``history.csv``). A resumed run
    that had ended (last epoch reached, or early stopping out of patience) trains no
    further, as an uninterrupted run would not. A fresh run records its ``fingerprint``
    (``run_fingerprint``) there, and a resume with another one is refused. A fresh run
    deletes an earlier run's files first and leaves the rest of the folder alone: other
    runs keep theirs in its subfolders (cv folds, binary models, tuning trials).
    With ``ema_decay`` set, the weights validated, checkpointed and returned are the moving
    average, not the last step's. Without ``val_loader`` the run trains ``max_epochs``
    epochs with no early stopping, and its "best" checkpoint is the last epoch's.
    """
    checkpoints = Path(trainer_settings.checkpoint_dir)
    last, best_path = checkpoints / "last.ckpt", checkpoints / "best.ckpt"
    history_path, recorded = checkpoints / "history.csv", checkpoints / "fingerprint.txt"
    resume_from = last if resume and last.exists() else None
    if resume_from is None:  # a fresh run: the files of an earlier run are not its own
        for stale in (last, best_path, history_path, recorded):
            stale.unlink(missing_ok=True)
        if fingerprint is not None:
            checkpoints.mkdir(parents=True, exist_ok=True)
            recorded.write_text(fingerprint)
        restored, ended = [], False
    else:
        _check_same_run(recorded, fingerprint, last)
        # Only its epoch and callback states are read here; Lightning restores the rest.
        saved = torch.load(last, map_location="cpu", weights_only=False, mmap=True)
        restored = _restored_history(history_path, saved["epoch"])
        ended = _ended(saved, trainer_settings)
    history = _History(history_path, restored)
    if not ended:
        _fit_lightning(
            module, train_loader, val_loader, trainer_settings, resume_from, history, callbacks
        )
    checkpoint = torch.load(best_path, map_location="cpu", weights_only=False)
    state_dict = {
        name.removeprefix("model."): tensor
        for name, tensor in checkpoint["state_dict"].items()
        if name.startswith("model.")
    }
    return FitResult(state_dict, int(checkpoint["epoch"]), pd.DataFrame(history.rows))


def _fit_lightning(
    module: AnomalyModule,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    trainer_settings: TrainerSettings,
    resume_from: Path | None,
    history: _History,
    callbacks: Sequence[L.Callback],
) -> None:
    """One Lightning ``fit`` that writes ``best.ckpt`` and ``last.ckpt`` (every epoch)."""
    checkpoints = Path(trainer_settings.checkpoint_dir)
    validated = val_loader is not None
    # Both save after validation, the best first, so that `last.ckpt` holds the best score
    # so far (by default the best saves at the epoch's end, after `last.ckpt`, which then
    # kept the previous epoch's best score and let a resumed run replace a better
    # `best.ckpt`). Without validation both save at the epoch's end: the best is the last.
    best = ModelCheckpoint(
        dirpath=checkpoints,
        monitor=trainer_settings.monitor if validated else None,
        mode=trainer_settings.mode,
        filename="best",
        enable_version_counter=False,
        save_on_train_epoch_end=not validated,
    )
    # Lightning's save_last follows the monitored saves only; resume needs every epoch.
    latest = ModelCheckpoint(
        dirpath=checkpoints,
        filename="last",
        enable_version_counter=False,
        save_on_train_epoch_end=not validated,
    )
    stopping = (
        [
            EarlyStopping(
                trainer_settings.monitor,
                mode=trainer_settings.mode,
                patience=trainer_settings.patience,
                check_on_train_epoch_end=False,  # after validation, also when resuming
            )
        ]
        if validated
        else []
    )
    if not validated and train_loader.generator is None:
        # Unvalidated, a run resumes at the end of its checkpointed epoch, and Lightning then
        # makes the next epoch's iterator before the module seeds that epoch; an iterator
        # draws its base seed from its loader's generator, else from the global stream,
        # which would then run one draw apart from an uninterrupted run's. (A validated
        # run resumes after its last batch, before validation, in the usual order.)
        train_loader = copy.copy(train_loader)
        train_loader.generator = torch.Generator().manual_seed(module.seed)
    amp = torch.cuda.is_available() and trainer_settings.amp
    if trainer_settings.ema_decay is not None:  # validated and saved in place of the raw weights
        callbacks = [EMAWeightAveraging(decay=trainer_settings.ema_decay), *callbacks]
    trainer = L.Trainer(
        max_epochs=trainer_settings.max_epochs,
        accelerator="auto",
        devices=trainer_settings.devices,
        num_nodes=trainer_settings.num_nodes,
        strategy=trainer_settings.strategy,
        precision="16-mixed" if amp else "32-true",
        gradient_clip_val=trainer_settings.gradient_clip_val,
        accumulate_grad_batches=trainer_settings.accumulate_grad_batches,
        callbacks=[best, latest, *stopping, history, *callbacks],
        deterministic=True,
        enable_progress_bar=trainer_settings.progress_bar,
        logger=False,
        default_root_dir=checkpoints,
        log_every_n_steps=1,
    )
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_from)


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

    bundle: dict
    history: pd.DataFrame


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
    per_view = settings.per_view
    datasets = build_datasets(
        cache,
        {part: ids_by_part[part] for part in ("train", "val")},
        targets,
        views,
        per_view,
        settings.augmentation,
        settings.seed,
    )
    loaders = build_loaders(
        datasets,
        settings.trainer.batch_size,
        settings.trainer.num_workers,
        settings.balanced_sampler,
        settings.seed,
    )
    frequencies = targets[datasets["train"].positions].mean(0).clip(1e-3, 1 - 1e-3).tolist()
    started = time.monotonic()
    parts = {part: ids_by_part[part] for part in ("train", "val")}
    module, result = fit_model(
        settings,
        ModelTask(classes, views, per_view, label_type, frequencies),
        loaders,
        run_fingerprint(settings, cache.fingerprint, parts),
        callbacks=callbacks,
    )
    bundle = {
        "config": saved_config(module.model),
        "initial_weights": (
            settings.model.weights_path or ("imagenet" if settings.model.pretrained else None)
        ),
        "state_dict": result.state_dict,
        "classes": classes,
        "label_type": label_type,
        "views": views,
        "per_view": per_view,
        "image_size": settings.image_size,
        "input_clahe": settings.augmentation.clahe,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mlflow_run_id": run.info.run_id if (run := mlflow.active_run()) else None,
        "best_epoch": result.best_epoch,
        "n_parameters": sum(p.numel() for p in module.model.parameters()),
        "training_seconds": time.monotonic() - started,
    }
    return TrainResult(bundle, result.history)


@dataclass(frozen=True)
class ModelTask:
    """What a model is built for: its classes, views, label type and the class
    frequencies of its training items (the loss' prior)."""

    classes: Sequence[str]
    views: Sequence[str]
    per_view: bool
    label_type: str
    frequencies: Sequence[float]


def fit_model(
    settings: TrainSettings,
    task: ModelTask,
    loaders: Mapping[str, DataLoader],
    fingerprint: str,
    trainer: TrainerSettings | None = None,
    callbacks: Sequence[L.Callback] = (),
) -> tuple[AnomalyModule, FitResult]:
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


def saved_config(model: torch.nn.Module) -> dict:
    """The config that rebuilds a trained model: no initial weights are loaded again (its
    weights travel beside it); the input normalisation they need stays in it."""
    return {**model.config.to_dict(), "pretrained": False, "weights_path": None}


# Keys model bundles gained after their first release, with what older bundles did.
BUNDLE_DEFAULTS = {"input_clahe": False}


def complete_bundle(bundle: Mapping) -> dict:
    """A saved bundle with every key this code reads: an older bundle gets the defaults
    that describe how it was trained."""
    return {**BUNDLE_DEFAULTS, **bundle}


def load_model(bundle: Mapping) -> torch.nn.Module:
    """The saved model, rebuilt from its config, in eval mode."""
    model = create_model(ModelConfig(**bundle["config"]))
    model.load_state_dict(bundle["state_dict"])
    return model.eval()


@dataclass
class Predictions:
    """A model's outputs for every item; None where it has no such head (or the batches no
    labels or masks). ``logits`` and ``features`` are those of the images as they are,
    without test-time augmentation: what out-of-distribution detectors score."""

    probs: torch.Tensor | None
    targets: torch.Tensor | None
    seg_probs: torch.Tensor | None
    masks: torch.Tensor | None
    logits: torch.Tensor | None
    features: torch.Tensor | None


@torch.no_grad()
def predict(model: torch.nn.Module, batches: Iterable[Batch], tta: str) -> Predictions:
    """Class and mask probabilities of every item, with its targets and masks; ``tta``
    (``ml.tta``: ``none``, ``hflip``, ``d4``) averages the logits over orientations of the
    views. ``logits`` and ``features`` are those of the views as they are."""
    parts: dict[str, list] = {name: [] for name in Predictions.__dataclass_fields__}
    turns = orientations(tta)
    for batch in batches:
        output = model(batch.images, batch.view_mask)
        logits, seg = output.logits, output.seg_logits
        parts["logits"].append(logits)
        parts["features"].append(output.features)
        for turn in turns[1:]:
            turned = model(turn.apply(batch.images), batch.view_mask)
            if logits is not None:
                logits = logits + turned.logits
            if seg is not None:
                seg = seg + turn.undo(turned.seg_logits)
        logits = None if logits is None else logits / len(turns)
        seg = None if seg is None else seg / len(turns)
        if logits is not None:
            parts["probs"].append(probabilities(logits, model.config.label_type))
            parts["targets"].append(batch.labels)
        if seg is not None:
            parts["seg_probs"].append(torch.sigmoid(seg))
            parts["masks"].append(batch.masks)
    return Predictions(
        **{
            name: torch.cat(found) if found and all(x is not None for x in found) else None
            for name, found in parts.items()
        }
    )


def score(
    probs: torch.Tensor | None,
    targets: torch.Tensor | None,
    seg: torch.Tensor | None,
    masks: torch.Tensor | None,
    classes: Sequence[str],
    label_type: str,
    rounds: int,
    seed: int,
    groups: Sequence | None = None,
) -> dict:
    """Classification and segmentation metrics with bootstrap 95 % intervals.

    ``groups`` (one per item, e.g. the tile of a photo) makes the bootstrap resample
    whole groups; see ``metrics.bootstrap_interval``.
    """
    part: dict = {}
    if probs is not None:
        part.update(classification_metrics(probs, targets, classes, label_type))
        part["macro_f1_ci95"] = bootstrap_interval(
            lambda i: classification_metrics(probs[i], targets[i], classes, label_type)[
                "macro_f1_present"
            ],
            len(probs),
            rounds=rounds,
            seed=seed,
            groups=groups,
        )
    if seg is not None:
        part["segmentation"] = segmentation_report(
            segmentation_stats(seg, masks), classes, rounds, seed, groups
        )
    return part


def segmentation_report(
    stats: torch.Tensor,
    classes: Sequence[str],
    rounds: int,
    seed: int,
    groups: Sequence | None = None,
) -> dict:
    """``segmentation_summary`` of per-item pixel counts (``segmentation_stats``) with a
    bootstrap 95 % interval of the mean IoU; ``classes`` may include ``normal``, which has
    no mask."""
    seg_classes = mask_classes(classes)
    summary = segmentation_summary(stats, seg_classes)
    summary["mean_iou_ci95"] = bootstrap_interval(
        lambda i: segmentation_summary(stats[i], seg_classes)["mean_iou"],
        len(stats),
        rounds=rounds,
        seed=seed,
        groups=groups,
    )
    return summary


def mask_classes(classes: Sequence[str]) -> list[str]:
    """The classes that have a mask channel: all but ``normal``."""
    return [c for c in classes if c != "normal"]


def pixel_count_columns(classes: Sequence[str]) -> list[str]:
    """Column names of per-item pixel counts in a prediction table,
    ``pixels_<class>_<tp|fp|tn|fn>``, per mask class and last for ``any_defect``."""
    return [f"pixels_{c}_{k}" for c in [*mask_classes(classes), "any_defect"] for k in PIXEL_COUNTS]


def pixel_count_table(stats: torch.Tensor, classes: Sequence[str]) -> pd.DataFrame:
    """``segmentation_stats`` (N, K + 1, 4) as N rows of ``pixel_count_columns``: additive,
    so pooled or resampled rows give their segmentation scores."""
    return pd.DataFrame(stats.flatten(1).numpy(), columns=pixel_count_columns(classes))


def pixel_counts(table: pd.DataFrame, classes: Sequence[str]) -> torch.Tensor | None:
    """The (N, K + 1, 4) pixel counts of a table's rows; None where it has none."""
    columns = pixel_count_columns(classes)
    if not set(columns) <= set(table.columns):
        return None
    counts = torch.from_numpy(table[columns].to_numpy(np.int64))
    return counts.reshape(len(table), -1, len(PIXEL_COUNTS))


def probability_columns(kind: str, classes: Sequence[str]) -> list[str]:
    """Column names of a prediction table: ``prob_<class>`` or ``target_<class>``."""
    return [f"{kind}_{c}" for c in classes]


def per_sample_table(
    table: pd.DataFrame,
    classes: Sequence[str],
    sort: bool = False,
    first: Sequence[str] = (),
    highest: Sequence[str] = (),
) -> pd.DataFrame:
    """A per-view model's prediction table at sample level, one row per ``sample_id``:
    each class's probability averaged over the sample's photos; its targets (where the
    table has them) and the ``highest`` columns their maximum; ``first`` their first."""
    targets = [c for c in probability_columns("target", classes) if c in table]
    how = (
        dict.fromkeys(probability_columns("prob", classes), "mean")
        | dict.fromkeys([*targets, *highest], "max")
        | dict.fromkeys(first, "first")
    )
    return table.groupby("sample_id", sort=sort).agg(how).reset_index()


def per_photo_table(table: pd.DataFrame, dataset: MultiViewDataset) -> pd.DataFrame:
    """A fused model's prediction table (one row per item of ``dataset``, in its order) as
    one row per present photo, ``item_id`` ``sample/view``, each with its sample's
    prediction: a decision per sample scored per photo. A per-view table is one already."""
    if dataset.per_view:
        return table
    views = dataset.items[0][1] if dataset.items else []
    photos = MultiViewDataset(dataset.cache, dataset.positions, view_index=views, per_view=True)
    rows = pd.Index(dataset.positions).get_indexer(photos.positions)
    item_ids = [photos.item_id(k) for k in range(len(photos))]
    return table.iloc[rows].assign(item_id=item_ids).reset_index(drop=True)


def prediction_table(
    part: str, dataset: MultiViewDataset, probs: torch.Tensor, targets: torch.Tensor, classes
) -> pd.DataFrame:
    """One row per item: part, sample, item (``sample/view`` for per-view), probabilities
    and targets per class."""
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "split": part,
                    "sample_id": dataset.cache.sample_ids[dataset.positions],
                    "item_id": [dataset.item_id(k) for k in range(len(dataset))],
                }
            ),
            pd.DataFrame(probs.numpy(), columns=probability_columns("prob", classes)),
            pd.DataFrame(
                targets.numpy().astype(np.uint8), columns=probability_columns("target", classes)
            ),
        ],
        axis=1,
    )
