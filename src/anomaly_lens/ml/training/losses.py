"""Loss registry: classification and segmentation losses, and their multi-task sum."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.models import ModelOutput
from anomaly_lens.ml.registry import Registry

LOSSES = Registry("loss")
register_loss = LOSSES.register


def _as_tensor(values: Sequence[float] | None) -> torch.Tensor | None:
    return None if values is None else torch.as_tensor(values, dtype=torch.float32)


def _per_class(values: torch.Tensor | None, ndim: int) -> torch.Tensor | None:
    """Per-class values shaped to broadcast over (B, K) or (B, K, H, W) logits."""
    if values is None or values.ndim == 0:
        return values
    return values.view(-1, *[1] * (ndim - 2))


@register_loss("bce")
class BCELoss(nn.Module):
    """Binary cross-entropy on logits; optional per-class positive weights."""

    def __init__(self, pos_weight: Sequence[float] | None = None, **_: object):
        super().__init__()
        self.register_buffer("pos_weight", _as_tensor(pos_weight), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(
            logits, target, pos_weight=_per_class(self.pos_weight, logits.ndim)
        )


@register_loss("focal")
class FocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al., 2017): ``-α_t (1-p_t)^γ log p_t``, averaged.

    ``alpha`` is a number, or ``"dynamic"``: per class ``1 - frequency`` of positives, so
    rare classes weigh more (needs ``class_frequencies``).
    """

    def __init__(
        self,
        alpha: float | str = 0.25,
        gamma: float = 2.0,
        class_frequencies: Sequence[float] | None = None,
        **_: object,
    ):
        super().__init__()
        if alpha == "dynamic":
            if class_frequencies is None:
                raise ValueError("focal alpha 'dynamic' needs class_frequencies")
            alpha = 1.0 - torch.as_tensor(class_frequencies, dtype=torch.float32)
        self.register_buffer("alpha", torch.as_tensor(alpha, dtype=torch.float32), persistent=False)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = torch.exp(-ce)
        alpha = _per_class(self.alpha, logits.ndim)
        alpha_t = alpha * target + (1 - alpha) * (1 - target)
        return (alpha_t * (1 - p_t) ** self.gamma * ce).mean()


@register_loss("dice")
class DiceLoss(nn.Module):
    """Soft Dice loss on sigmoid probabilities, per image and class, averaged."""

    def __init__(self, smooth: float = 1.0, **_: object):
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = torch.sigmoid(logits).flatten(2)
        target = target.flatten(2)
        intersection = (probs * target).sum(-1)
        total = probs.sum(-1) + target.sum(-1)
        return (1 - (2 * intersection + self.smooth) / (total + self.smooth)).mean()


@register_loss("focal_dice")
class FocalDiceLoss(nn.Module):
    """Focal plus Dice, weighted: the usual pair for small, rare defect masks."""

    def __init__(self, focal_weight: float = 1.0, dice_weight: float = 1.0, **options: object):
        super().__init__()
        self.focal, self.dice = FocalLoss(**options), DiceLoss(**options)
        self.weights = (focal_weight, dice_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weights[0] * self.focal(logits, target) + self.weights[1] * self.dice(
            logits, target
        )


@register_loss("weighted_ce")
class WeightedCELoss(nn.Module):
    """Softmax cross-entropy for multi-class labels (one-hot or mixed targets), class-weighted.

    Weights are given, or (``class_frequencies`` with no ``weights``) inverse frequencies
    normalised to mean 1.
    """

    def __init__(
        self,
        weights: Sequence[float] | None = None,
        class_frequencies: Sequence[float] | None = None,
        **_: object,
    ):
        super().__init__()
        if weights is None and class_frequencies is not None:
            inverse = 1.0 / torch.as_tensor(class_frequencies, dtype=torch.float32).clamp_min(1e-6)
            weights = inverse / inverse.mean()
        self.register_buffer("weights", _as_tensor(weights), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=self.weights)  # probabilities: MixUp-safe


@register_loss("ce")
class CELoss(WeightedCELoss):
    """Unweighted softmax cross-entropy (e.g. beside a class-balanced sampler)."""

    def __init__(self, **_: object):
        super().__init__()


SOFTMAX_LOSSES = ("weighted_ce", "ce")  # over the classes of one sample: multi-class only


def check_loss_fits_labels(name: str, label_type: str) -> None:
    """A softmax loss cannot train sigmoid outputs: with one output (a binary model) it is
    always 0, and a multi-label model's probabilities are read through sigmoids."""
    if name in SOFTMAX_LOSSES and label_type == "multilabel":
        raise ValueError(
            f"loss.classification {name!r} is a softmax loss: it needs multi-class labels, "
            "but the labels are multilabel (one sigmoid per class, as in a binary model; "
            "with one output the loss is always 0). Use 'bce' or 'focal'."
        )


def create_loss(name: str, **options) -> nn.Module:
    """Build a registered loss by name with its options."""
    return LOSSES.lookup(name)(**options)


class MultiTaskLoss(nn.Module):
    """Weighted sum of a classification and a segmentation loss over a model's output."""

    def __init__(
        self,
        classification: nn.Module | None,
        segmentation: nn.Module | None,
        classification_weight: float = 1.0,
        segmentation_weight: float = 1.0,
    ):
        super().__init__()
        self.classification, self.segmentation = classification, segmentation
        self.weights = (classification_weight, segmentation_weight)

    def forward(self, output: ModelOutput, batch: Batch) -> dict[str, torch.Tensor]:
        """Total and per-part losses (the parts a model does not predict are left out)."""
        parts = {}
        if self.classification is not None and output.logits is not None:
            parts["classification"] = self.weights[0] * self.classification(
                output.logits, batch.labels
            )
        if self.segmentation is not None and output.seg_logits is not None:
            parts["segmentation"] = self.weights[1] * self.segmentation(
                output.seg_logits, batch.masks
            )
        if not parts:
            raise ValueError("the model output has nothing the configured losses apply to")
        return {"loss": sum(parts.values()), **parts}
