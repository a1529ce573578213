"""Typed training settings: what the library's training functions take.

Pydantic models with the defaults of ``conf/base/parameters_train.yml``; unknown keys are
refused. Build them from a parameter block with ``TrainSettings.model_validate(block)``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import timm
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)

from anomaly_lens.ml.data.cache import AUGMENTATION_PRESETS, RESIZE_MODES
from anomaly_lens.ml.evaluation.tta import TestTimeAugmentation
from anomaly_lens.ml.models import FUSIONS, SEGMENTATION_HEADS
from anomaly_lens.ml.models.model import TASKS
from anomaly_lens.ml.models.pretrained import (
    WEIGHT_PACKAGES,
    PretrainedWeightsError,
    weight_package,
)
from anomaly_lens.ml.training.losses import LOSSES, check_loss_fits_labels


class Settings(BaseModel):
    """Frozen, with unknown keys refused (a typo is an error, not a silent default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _registered(registry, name: str) -> str:
    if name not in registry:
        raise ValueError(f"expected one of {sorted(registry)}, got {name!r}")
    return name


class ModelSettings(Settings):
    """The model's architecture; the data fill in classes, views and label type."""

    backbone: str = "resnet18"
    pretrained: bool = False
    weights_path: str | None = None
    in_chans: PositiveInt = 1
    cbam_stages: list[int] = [-2, -1]
    fusion: str = "late"
    fusion_options: dict[str, Any] = {"shared_encoder": True}
    task: Literal[TASKS] = "classification"
    segmentation_head: str = "fpn"
    decoder_channels: PositiveInt = 64
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    pooling: Literal["avg", "max", "avgmax"] = "avgmax"
    input_mean: list[float] | None = None
    input_std: list[float] | None = None

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        if not timm.is_model(name):
            raise ValueError(f"{name!r} is not a timm model (see timm.list_models())")
        return name

    @field_validator("fusion")
    @classmethod
    def _known_fusion(cls, name: str) -> str:
        return _registered(FUSIONS, name)

    @field_validator("segmentation_head")
    @classmethod
    def _known_head(cls, name: str) -> str:
        return _registered(SEGMENTATION_HEADS, name)

    def model_post_init(self, context: Any) -> None:
        if self.pretrained and not self.weights_path:
            try:
                weight_package(self.backbone)
            except PretrainedWeightsError as error:
                raise ValueError(str(error)) from None


class LossSettings(Settings):
    classification: str = "bce"
    segmentation: str = "focal_dice"
    classification_weight: float = Field(default=1.0, ge=0.0)
    segmentation_weight: float = Field(default=1.0, ge=0.0)
    options: dict[str, Any] = {}

    @field_validator("classification", "segmentation")
    @classmethod
    def _known_loss(cls, name: str) -> str:
        return _registered(LOSSES, name)


class OptimizerSettings(Settings):
    lr: float = Field(default=0.002, gt=0.0)
    weight_decay: float = Field(default=0.0001, ge=0.0)
    warmup_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)


class AugmentationSettings(Settings):
    preset: Literal[AUGMENTATION_PRESETS] = "light"
    clahe: bool = False
    rotate90: bool = False  # also quarter turns (for defects that have no orientation)
    modality_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    def at_evaluation(self) -> AugmentationSettings:
        """What evaluation keeps of these settings: the input CLAHE, nothing random."""
        return AugmentationSettings(preset="none", clahe=self.clahe)


MIXING = ("none", "mixup", "cutmix")


class MixingSettings(Settings):
    mode: Literal[MIXING] = "none"
    alpha: float = Field(default=0.4, gt=0.0)


class TrainerSettings(Settings):
    """Lightning's loop: epochs, batches, early stopping, checkpoints."""

    max_epochs: PositiveInt = 25
    batch_size: PositiveInt = 16
    num_workers: NonNegativeInt = 0
    accumulate_grad_batches: PositiveInt = 1
    gradient_clip_val: float | None = Field(default=1.0, ge=0.0)
    monitor: Literal["val_macro_f1", "val_loss"] = "val_macro_f1"
    mode: Literal["min", "max"] = "max"
    patience: NonNegativeInt = 8
    strategy: str = "auto"
    devices: PositiveInt | Literal["auto"] = 1
    num_nodes: PositiveInt = 1
    amp: bool = True
    # Validate, checkpoint and return an exponential moving average of the weights
    # (updated after every optimiser step with this decay) instead of the raw weights.
    ema_decay: float | None = Field(default=None, gt=0.0, lt=1.0)
    progress_bar: bool = True
    checkpoint_dir: str = "data/06_models/checkpoints"


class TrainSettings(Settings):
    """The ``train`` parameter block."""

    # auto: from the images (``ml.data.cache.chosen_image_size``), at most max_image_size
    image_size: Annotated[int, Field(ge=16)] | Literal["auto"] = 64
    max_image_size: int = Field(default=224, ge=32)
    views: list[str] | None = None
    per_view: bool = False
    resize: Literal[RESIZE_MODES] = "stretch"
    label_type: Literal["auto", "multilabel", "multiclass"] = "auto"
    model: ModelSettings = ModelSettings()
    loss: LossSettings = LossSettings()
    optimizer: OptimizerSettings = OptimizerSettings()
    augmentation: AugmentationSettings = AugmentationSettings()
    mixing: MixingSettings = MixingSettings()
    balanced_sampler: bool = True
    freeze_encoder_epochs: NonNegativeInt = 0
    channels_last: bool = False
    init_from: str | None = None
    trainer: TrainerSettings = TrainerSettings()
    resume: bool = False
    tta: TestTimeAugmentation = "hflip"
    bootstrap_rounds: NonNegativeInt = 200
    baseline_trees: PositiveInt = 300
    # the frozen features of the logistic baseline: a backbone whose weights are installed
    baseline_backbone: Literal[tuple(WEIGHT_PACKAGES)] = "tf_efficientnet_lite0"
    seed: int = 42

    @model_validator(mode="after")
    def _loss_fits_labels(self) -> TrainSettings:
        check_loss_fits_labels(self.loss.classification, self.label_type)
        return self
