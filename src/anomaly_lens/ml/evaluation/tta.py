"""Test-time augmentation: the orientations of an image whose predictions are averaged.

``none`` reads the image as it is, ``hflip`` also its mirror image, ``d4`` all eight
orientations of the square (four quarter turns, each also mirrored): for models trained
with ``rotate90``, which see every orientation in training. Orientations act on the last
two axes, so one call turns every view of a batch; class logits are averaged as they come,
mask logits after turning them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import BeforeValidator

TTA_MODES = ("none", "hflip", "d4")


def tta_mode(value):
    """``true``/``false`` (the setting's earlier form) mean ``hflip``/``none``."""
    if isinstance(value, bool):
        return "hflip" if value else "none"
    return value


TestTimeAugmentation = Annotated[Literal[TTA_MODES], BeforeValidator(tta_mode)]


@dataclass(frozen=True)
class Orientation:
    """Mirrored left to right (``mirrored``), then turned ``quarter_turns`` times."""

    quarter_turns: int = 0
    mirrored: bool = False

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        turned = images.flip(-1) if self.mirrored else images
        return torch.rot90(turned, self.quarter_turns, dims=(-2, -1))

    def undo(self, maps: torch.Tensor) -> torch.Tensor:
        """Back to the original orientation: ``undo(apply(x)) == x``."""
        turned = torch.rot90(maps, -self.quarter_turns, dims=(-2, -1))
        return turned.flip(-1) if self.mirrored else turned


def orientations(mode: str) -> list[Orientation]:
    """The orientations that ``mode`` averages over, the image as it is first."""
    if mode not in TTA_MODES:
        raise ValueError(f"test-time augmentation: expected one of {TTA_MODES}, got {mode!r}")
    mirrors = (False,) if mode == "none" else (False, True)
    turns = range(4) if mode == "d4" else range(1)
    return [Orientation(k, m) for k in turns for m in mirrors]
