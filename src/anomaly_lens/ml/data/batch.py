"""The typed batch: the contract between datasets, models, losses and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass
class Batch:
    """A batch of multi-view samples.

    ``images``: (B, V, C, H, W) float; a missing view is all zeros.
    ``view_mask``: (B, V) bool, True where the view is present.
    ``labels``: (B, K) float multi-hot (multi-label) or one-hot (multi-class), or None.
    ``masks``: (B, K, H, W) float pixel targets per class, or None.
    """

    images: torch.Tensor
    view_mask: torch.Tensor
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    sample_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.ndim != 5:
            raise ValueError(f"images must be (B, V, C, H, W), got {tuple(self.images.shape)}")
        if self.view_mask.shape != self.images.shape[:2]:
            raise ValueError("view_mask must be (B, V) like the first two image dimensions")

    @property
    def size(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on another device."""
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return replace(
            self,
            images=move(self.images),
            view_mask=move(self.view_mask),
            labels=move(self.labels),
            masks=move(self.masks),
        )
