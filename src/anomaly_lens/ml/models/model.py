"""One model API for every task and fusion, and the registry behind ``create_model``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.models.fusion import FUSIONS
from anomaly_lens.ml.models.heads import SEGMENTATION_HEADS, ClassificationHead
from anomaly_lens.ml.models.pretrained import grey_normalisation, weight_package
from anomaly_lens.ml.registry import Registry

TASKS = ("classification", "segmentation", "multitask")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model (saved beside its weights)."""

    num_classes: int
    views: list[str] = field(default_factory=lambda: ["image"])
    task: str = "classification"
    label_type: str = "multilabel"  # or "multiclass"
    backbone: str = "resnet18"
    in_chans: int = 1
    pretrained: bool = False
    weights_path: str | None = None
    cbam_stages: list[int] = field(default_factory=lambda: [-2, -1])
    fusion: str = "late"
    fusion_options: dict[str, Any] = field(default_factory=dict)
    segmentation_head: str = "fpn"
    decoder_channels: int = 64
    dropout: float = 0.2
    pooling: str = "avgmax"  # avg | max | avgmax (classification head)
    # Input normalisation, per channel, of images in [0, 1]; pretrained package weights
    # fill in what they were trained with. None: images go in as they are.
    input_mean: list[float] | None = None
    input_std: list[float] | None = None

    def __post_init__(self) -> None:
        if self.pretrained and not self.weights_path and self.input_mean is None:
            package = weight_package(self.backbone)
            self.input_mean, self.input_std = grey_normalisation(package, self.in_chans)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def mask_classes(self) -> int:
        """Channels of the masks: the classes, less the leading ``normal`` of multi-class."""
        return self.num_classes - (self.label_type == "multiclass")


@dataclass
class ModelOutput:
    """What a model returns; absent parts are None."""

    logits: torch.Tensor | None  # (B, K)
    seg_logits: torch.Tensor | None  # (B, K, H, W); multi-class: K - 1, no "normal" mask
    attention: torch.Tensor | None = None
    features: torch.Tensor | None = None  # (B, D) pooled features the logits are made from


class AnomalyModel(nn.Module):
    """Fusion encoder plus classification and/or segmentation head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {config.task!r}")
        fusion = FUSIONS.lookup(config.fusion)
        segmentation_head = SEGMENTATION_HEADS.lookup(config.segmentation_head)
        self.config = config
        mean = config.input_mean or [0.0] * config.in_chans
        std = config.input_std or [1.0] * config.in_chans
        # Not in the state dict: the config (saved beside the weights) rebuilds them.
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 1, -1, 1, 1), False)
        self.register_buffer("input_std", torch.tensor(std).view(1, 1, -1, 1, 1), False)
        self.fusion = fusion(
            n_views=len(config.views),
            in_chans=config.in_chans,
            backbone=config.backbone,
            pretrained=config.pretrained,
            weights_path=config.weights_path,
            cbam_stages=config.cbam_stages,
            **config.fusion_options,
        )
        channels = self.fusion.channels
        self.classifier = (
            ClassificationHead(channels[-1], config.num_classes, config.dropout, config.pooling)
            if config.task in ("classification", "multitask")
            else None
        )
        head_args = {"decoder_channels": config.decoder_channels}
        if config.segmentation_head == "deeplabv3plus":
            head_args["reductions"] = self.fusion.reductions
        self.segmenter = (
            segmentation_head(channels, config.mask_classes, **head_args)
            if config.task in ("segmentation", "multitask")
            else None
        )

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(B, V, C, H, W) images in [0, 1] as the backbone's weights expect them."""
        return (images - self.input_mean) / self.input_std

    def encode(self, images: torch.Tensor, view_mask: torch.Tensor) -> list[torch.Tensor]:
        """Fused feature pyramid (finest first): the features OOD detection and XAI use."""
        return self.fusion(self.normalise(images), view_mask)[0]

    def forward(self, images: torch.Tensor, view_mask: torch.Tensor) -> ModelOutput:
        pyramid, attention = self.fusion(self.normalise(images), view_mask)
        features = self.classifier.pool(pyramid) if self.classifier else None
        return ModelOutput(
            logits=self.classifier.classify(features) if self.classifier else None,
            seg_logits=self.segmenter(pyramid, images.shape[-2:]) if self.segmenter else None,
            attention=attention,
            features=features,
        )

    def predict_batch(self, batch: Batch) -> ModelOutput:
        return self(batch.images, batch.view_mask)


MODELS = Registry("model")
MODELS["anomaly"] = AnomalyModel
register_model = MODELS.register


def load_matching_weights(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor]
) -> dict[str, list[str]]:
    """Copy the tensors whose name and shape match (fine-tuning with a new head or classes).

    Returns the names ``loaded`` and the ``skipped`` ones (absent or of another shape).
    """
    own = model.state_dict()
    matching = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matching, strict=False)
    return {"loaded": sorted(matching), "skipped": sorted(set(own) - set(matching))}


def create_model(config: ModelConfig | Mapping[str, Any], name: str = "anomaly") -> nn.Module:
    """Build a registered model from a ``ModelConfig`` or a plain mapping of its fields."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig(**dict(config))
    return MODELS.lookup(name)(config)
