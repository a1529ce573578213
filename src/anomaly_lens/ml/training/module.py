"""Lightning glue around the pure ``nn.Module``: loop, optimiser, schedule, validation metric."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import lightning as L
import torch
import torchmetrics.functional.classification as tmc

from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.evaluation.metrics import multilabel
from anomaly_lens.ml.models import ModelConfig, ModelOutput, create_model
from anomaly_lens.ml.training.losses import MultiTaskLoss, check_loss_fits_labels, create_loss
from anomaly_lens.ml.training.settings import (
    MIXING,
    LossSettings,
    MixingSettings,
    OptimizerSettings,
)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up to 1 over ``warmup`` steps, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def mix_batch(batch: Batch, mode: str, alpha: float, generator: torch.Generator) -> Batch:
    """MixUp (blend two samples) or CutMix (paste a box of one into another).

    Labels and masks are mixed in the same proportion as the pixels; a view counts as
    present when either sample has it.
    """
    if mode == "none" or batch.size < 2:
        return batch
    if mode not in MIXING:
        raise ValueError(f"mixing must be one of {MIXING}, not {mode!r}")
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(batch.size, generator=generator)
    images, masks = batch.images.clone(), batch.masks.clone()
    if mode == "mixup":
        images = lam * images + (1 - lam) * batch.images[perm]
        masks = lam * masks + (1 - lam) * batch.masks[perm]
    else:
        h, w = images.shape[-2:]
        cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
        y0 = int(torch.randint(0, h - cut_h + 1, (1,), generator=generator))
        x0 = int(torch.randint(0, w - cut_w + 1, (1,), generator=generator))
        images[..., y0 : y0 + cut_h, x0 : x0 + cut_w] = batch.images[perm][
            ..., y0 : y0 + cut_h, x0 : x0 + cut_w
        ]
        masks[..., y0 : y0 + cut_h, x0 : x0 + cut_w] = batch.masks[perm][
            ..., y0 : y0 + cut_h, x0 : x0 + cut_w
        ]
        lam = 1 - cut_h * cut_w / (h * w)
    labels = lam * batch.labels + (1 - lam) * batch.labels[perm]
    return replace(
        batch,
        images=images,
        masks=masks,
        labels=labels,
        view_mask=batch.view_mask | batch.view_mask[perm],
    )


def probabilities(logits: torch.Tensor, label_type: str) -> torch.Tensor:
    """Sigmoid per class (multi-label) or softmax over classes (multi-class)."""
    return torch.softmax(logits, 1) if label_type == "multiclass" else torch.sigmoid(logits)


class TrainingModule(L.LightningModule):
    """Trains an ``AnomalyModel``; logs ``train_loss``, ``val_loss`` and ``val_macro_f1``.

    ``freeze_encoder_epochs``: the encoder is frozen for that many first epochs (only the
    heads and fusion layers learn), then unfrozen. Torch's random state is reseeded from
    ``(seed, epoch)`` at every epoch, so a resumed run repeats the epochs it missed exactly.
    """

    def __init__(
        self,
        model: ModelConfig,
        loss: LossSettings,
        optimizer: OptimizerSettings,
        class_frequencies: Sequence[float],
        freeze_encoder_epochs: int = 0,
        seed: int = 0,
        mixing: MixingSettings | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        self.model = create_model(model)
        self.label_type = model.label_type
        self.optimizer_settings, self.mixing = optimizer, mixing or MixingSettings()
        self.freeze_encoder_epochs, self.seed = freeze_encoder_epochs, seed
        if self.model.classifier:
            check_loss_fits_labels(loss.classification, self.label_type)
        options = {**loss.options, "class_frequencies": list(class_frequencies)}
        self.criterion = MultiTaskLoss(
            create_loss(loss.classification, **options) if self.model.classifier else None,
            create_loss(loss.segmentation, **options) if self.model.segmenter else None,
            loss.classification_weight,
            loss.segmentation_weight,
        )
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._val_probs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []

    def forward(self, batch: Batch) -> ModelOutput:
        return self.model(batch.images, batch.view_mask)

    def _encoders(self) -> list[torch.nn.Module]:
        fusion = self.model.fusion
        return list(fusion.views.encoders) if hasattr(fusion, "views") else [fusion.encoder]

    def on_train_epoch_start(self) -> None:
        torch.manual_seed(self.seed * 1000 + self.current_epoch)
        frozen = self.current_epoch < self.freeze_encoder_epochs
        for encoder in self._encoders():
            encoder.requires_grad_(not frozen)
            # A frozen encoder also keeps its batch-norm statistics (eval mode): training
            # mode would normalise with batch statistics and overwrite the pretrained ones.
            encoder.train(not frozen)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.global_step)
        batch = mix_batch(batch, self.mixing.mode, self.mixing.alpha, generator)
        losses = self.criterion(self(batch), batch)
        for name, value in losses.items():  # the epoch's mean over its batches, not the last's
            self.log(
                f"train_{name}",
                value,
                batch_size=batch.size,
                on_step=False,
                on_epoch=True,
                sync_dist=True,
                prog_bar=name == "loss",
            )
        return losses["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        output = self(batch)
        self.log(
            "val_loss", self.criterion(output, batch)["loss"], batch_size=batch.size, sync_dist=True
        )
        if output.logits is not None:
            self._val_probs.append(probabilities(output.logits, self.label_type).detach().cpu())
            self._val_targets.append(batch.labels.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val_probs:
            return
        probs, targets = torch.cat(self._val_probs), torch.cat(self._val_targets).int()
        self._val_probs.clear()
        self._val_targets.clear()
        if self.label_type == "multiclass":
            score = tmc.multiclass_f1_score(
                probs, targets.argmax(1), num_classes=probs.shape[1], average="macro"
            )
        else:
            score = multilabel("f1_score", probs, targets, "macro")
        self.log("val_macro_f1", score, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        options = self.optimizer_settings
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=options.lr, weight_decay=options.weight_decay
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = max(int(total * options.warmup_fraction), 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, warmup, total)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
