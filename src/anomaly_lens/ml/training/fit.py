"""Building the Lightning module and fitting it with Lightning's Trainer. No Kedro."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import mlflow
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint
from torch.utils.data import DataLoader

from anomaly_lens.ml.models import ModelConfig
from anomaly_lens.ml.training.module import TrainingModule
from anomaly_lens.ml.training.resume import check_same_run, has_ended, metrics_of, restored_history
from anomaly_lens.ml.training.settings import TrainerSettings, TrainSettings

logger = logging.getLogger(__name__)


PER_VIEW_SLOT = "any"  # the one view slot of a per-view model (it sees every view alike)


def build_module(
    settings: TrainSettings,
    classes: Sequence[str],
    views: Sequence[str],
    per_view: bool,
    label_type: str,
    class_frequencies: Sequence[float],
) -> TrainingModule:
    """A fresh ``TrainingModule`` from the training settings for ``classes`` seen through
    ``views``."""
    model_config = ModelConfig(
        **settings.model.model_dump(),
        num_classes=len(classes),
        views=[PER_VIEW_SLOT] if per_view else list(views),
        label_type=label_type,
    )
    return TrainingModule(
        model_config,
        settings.loss,
        settings.optimizer,
        list(class_frequencies),
        settings.freeze_encoder_epochs,
        settings.seed,
        settings.mixing,
        settings.channels_last,
    )


@dataclass
class FitResult:
    """The best checkpoint's weights and epoch, and the per-epoch metrics."""

    state_dict: dict[str, torch.Tensor]
    best_epoch: int
    history: pd.DataFrame


class EpochHistory(L.Callback):
    """Per-epoch metrics as rows, also logged to the active MLflow run with the epoch as
    step and written to ``path`` beside ``last.ckpt``, so that a resumed run's history
    starts with the epochs of ``restored`` (read back from ``path``)."""

    def __init__(self, path: Path, restored: Sequence[dict] = ()):
        self.path = path
        self.rows: list[dict] = list(restored)

    def on_train_start(self, trainer, module):
        if mlflow.active_run() is not None and trainer.is_global_zero:
            for row in self.rows:  # a resumed run's MLflow curves start at epoch 0 too
                mlflow.log_metrics(metrics_of(row), step=row["epoch"])

    def on_train_epoch_end(self, trainer, module):  # runs after the epoch's validation
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if not metrics:  # the checkpointed epoch, replayed on resume: its row is restored
            return
        self.rows.append({"epoch": trainer.current_epoch} | metrics)
        if trainer.is_global_zero:
            pd.DataFrame(self.rows).to_csv(self.path, index=False)
            if mlflow.active_run() is not None:
                mlflow.log_metrics(metrics, step=trainer.current_epoch)


def fit(
    module: TrainingModule,
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
        check_same_run(recorded, fingerprint, last)
        # Only its epoch and callback states are read here; Lightning restores the rest.
        saved = torch.load(last, map_location="cpu", weights_only=False, mmap=True)
        restored = restored_history(history_path, saved["epoch"])
        ended = has_ended(saved, trainer_settings)
    history = EpochHistory(history_path, restored)
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


def _saving_and_stopping(trainer_settings: TrainerSettings, validated: bool) -> list[L.Callback]:
    """``best.ckpt`` and ``last.ckpt`` (every epoch), and early stopping when validated."""
    checkpoints = Path(trainer_settings.checkpoint_dir)
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
    return [best, latest, *stopping]


def _fit_lightning(
    module: TrainingModule,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    trainer_settings: TrainerSettings,
    resume_from: Path | None,
    history: EpochHistory,
    callbacks: Sequence[L.Callback],
) -> None:
    """One Lightning ``fit`` that writes ``best.ckpt`` and ``last.ckpt`` (every epoch)."""
    checkpoints = Path(trainer_settings.checkpoint_dir)
    validated = val_loader is not None
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
        callbacks=[*_saving_and_stopping(trainer_settings, validated), history, *callbacks],
        deterministic=True,
        enable_progress_bar=trainer_settings.progress_bar,
        logger=False,
        default_root_dir=checkpoints,
        log_every_n_steps=1,
    )
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_from)
