"""The saved model bundle: the config that rebuilds it, defaults of older bundles, loading. No Kedro."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from anomaly_lens.ml.models import ModelConfig, create_model

logger = logging.getLogger(__name__)


def saved_config(model: torch.nn.Module) -> dict:
    """The config that rebuilds a trained model: no initial weights are loaded again (its
    weights travel beside it); the input normalisation they need stays in it."""
    return {**model.config.to_dict(), "pretrained": False, "weights_path": None}


# Keys model bundles gained after their first release, with what older bundles did.
BUNDLE_DEFAULTS = {"input_clahe": False}


def complete_bundle(bundle: Mapping) -> dict:
    """A saved bundle with every key this code reads: an older bundle gets the defaults
    that describe how it was trained."""
    return {**BUNDLE_DEFAULTS, **bundle}


def load_model(bundle: Mapping) -> torch.nn.Module:
    """The saved model, rebuilt from its config, in eval mode."""
    model = create_model(ModelConfig(**bundle["config"]))
    model.load_state_dict(bundle["state_dict"])
    return model.eval()
