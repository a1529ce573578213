"""Multi-scale timm encoders, optionally with CBAM after chosen stages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import nn

from anomaly_lens.ml.models.cbam import CBAM
from anomaly_lens.ml.models.pretrained import package_state_dict


class Encoder(nn.Module):
    """A timm backbone with ``features_only``: one feature map per stage, finest first.

    ``pretrained`` loads ImageNet weights shipped by an installed package
    (``anomaly_lens.ml.models.pretrained``; nothing is downloaded); ``weights_path`` loads a local
    timm state dict instead. Either way timm adapts the first convolution to ``in_chans``
    (grey: the sum of the RGB filters). ``cbam_stages`` are stage indices (negative counts from
    the end) after which a CBAM block is inserted into the chain: the following stages
    and the returned feature map both see its output.
    """

    def __init__(
        self,
        backbone: str,
        in_chans: int,
        pretrained: bool = False,
        weights_path: str | None = None,
        cbam_stages: Sequence[int] = (-2, -1),
    ):
        super().__init__()
        kwargs = {}
        if weights_path:
            if not Path(weights_path).is_file():
                raise FileNotFoundError(f"backbone weights file not found: {weights_path}")
            pretrained, kwargs["pretrained_cfg_overlay"] = True, {"file": str(weights_path)}
        elif pretrained:
            kwargs["pretrained_cfg_overlay"] = {"state_dict": package_state_dict(backbone)}
        self.backbone = timm.create_model(
            backbone, pretrained=pretrained, features_only=True, in_chans=in_chans, **kwargs
        )
        self.channels: list[int] = list(self.backbone.feature_info.channels())
        self.reductions: list[int] = list(self.backbone.feature_info.reduction())
        stages = len(self.channels)
        chosen = sorted({s % stages for s in cbam_stages})
        self.attention = nn.ModuleDict({str(s): CBAM(self.channels[s]) for s in chosen})
        names = self.backbone.feature_info.module_name()
        for stage in chosen:
            self._stage_module(names[stage]).register_forward_hook(self.attention[str(stage)].hook)

    def stage_module(self, stage: int) -> nn.Module:
        """The module whose output is stage ``stage``'s feature map (negative: from the end)."""
        return self._stage_module(self.backbone.feature_info.module_name()[stage])

    def _stage_module(self, name: str) -> nn.Module:
        """The module whose output is a stage's feature map (timm flattens some names)."""
        try:
            return self.backbone.get_submodule(name)
        except AttributeError:
            return self.backbone.get_submodule(name.replace(".", "_"))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)
