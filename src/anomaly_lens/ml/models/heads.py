"""Prediction heads over a fused feature pyramid (finest level first)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anomaly_lens.ml.registry import Registry

SEGMENTATION_HEADS = Registry("segmentation head")
register_segmentation_head = SEGMENTATION_HEADS.register


def _conv(in_channels: int, out_channels: int, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            padding=dilation * (kernel // 2),
            dilation=dilation,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


POOLINGS = ("avg", "max", "avgmax")


class ClassificationHead(nn.Module):
    """Global pooling of the last level, dropout, one logit per class.

    ``avgmax`` concatenates average and max pooling: the max keeps a small defect's
    response from being diluted by the background.
    """

    def __init__(
        self, channels: int, num_classes: int, dropout: float = 0.2, pooling: str = "avgmax"
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(channels * (2 if pooling == "avgmax" else 1), num_classes)

    def pool(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        """The pooled features of the last level, which the logits are a linear map of."""
        x = pyramid[-1]
        return {
            "avg": lambda: x.mean(dim=(2, 3)),
            "max": lambda: x.amax(dim=(2, 3)),
            "avgmax": lambda: torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], 1),
        }[self.pooling]()

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(pooled))

    def forward(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        return self.classify(self.pool(pyramid))


@register_segmentation_head("fpn")
class FPNHead(nn.Module):
    """U-Net/FPN-style decoder: lateral 1x1 convs, top-down sum, 3x3 smoothing."""

    def __init__(self, channels: list[int], num_classes: int, decoder_channels: int = 64):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, decoder_channels, 1) for c in channels)
        self.smooth = _conv(decoder_channels, decoder_channels)
        self.classify = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, pyramid: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = self.lateral[-1](pyramid[-1])
        for lateral, feature in zip(self.lateral[-2::-1], pyramid[-2::-1], strict=True):
            x = lateral(feature) + F.interpolate(
                x, size=feature.shape[-2:], mode="bilinear", align_corners=False
            )
        return F.interpolate(
            self.classify(self.smooth(x)), size=size, mode="bilinear", align_corners=False
        )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: parallel dilated convs plus image-level pooling."""

    def __init__(
        self, in_channels: int, out_channels: int, rates: tuple[int, ...] = (1, 6, 12, 18)
    ):
        super().__init__()
        self.branches = nn.ModuleList(
            _conv(in_channels, out_channels, 1 if r == 1 else 3, r) for r in rates
        )
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True)
        )
        self.project = _conv(out_channels * (len(rates) + 1), out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


@register_segmentation_head("deeplabv3plus")
class DeepLabV3PlusHead(nn.Module):
    """DeepLabV3+: ASPP on the coarsest level, fused with a 4x-reduced low-level feature."""

    def __init__(
        self,
        channels: list[int],
        num_classes: int,
        decoder_channels: int = 64,
        reductions: list[int] | None = None,
    ):
        super().__init__()
        reductions = reductions or [2 ** (i + 1) for i in range(len(channels))]
        self.low_index = min(range(len(channels)), key=lambda i: abs(reductions[i] - 4))
        self.aspp = ASPP(channels[-1], decoder_channels)
        self.low = _conv(channels[self.low_index], 48, 1)
        self.fuse = nn.Sequential(
            _conv(decoder_channels + 48, decoder_channels),
            _conv(decoder_channels, decoder_channels),
        )
        self.classify = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, pyramid: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        low = self.low(pyramid[self.low_index])
        high = F.interpolate(
            self.aspp(pyramid[-1]), size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        out = self.classify(self.fuse(torch.cat([high, low], dim=1)))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)
