"""The trained model as one typed artefact (``ModelBundle``): the config that rebuilds the
network, its weights, and what it was trained for. No Kedro."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch

from anomaly_lens.ml.models import ModelConfig, create_model

logger = logging.getLogger(__name__)


def saved_config(model: torch.nn.Module) -> dict:
    """The config that rebuilds a trained model: no initial weights are loaded again (its
    weights travel beside it); the input normalisation they need stays in it."""
    return {**model.config.to_dict(), "pretrained": False, "weights_path": None}


@dataclass
class ModelBundle:
    """What the catalog's ``model`` holds: everything that rebuilds, identifies and serves a
    trained model. Saved as a plain mapping of these fields (``torch.save``, loaded with
    ``weights_only=True``), so files written before this class existed load too: fields
    they lack take the defaults that describe how those models were trained."""

    config: dict
    state_dict: dict[str, torch.Tensor]
    classes: list[str]
    label_type: str
    views: list[str]
    per_view: bool
    image_size: int
    input_clahe: bool = False  # bundles saved before CLAHE was an option: without
    resize: str = "stretch"  # bundles saved before padding was an option: stretched
    initial_weights: str | None = None
    trained_at: str | None = None
    mlflow_run_id: str | None = None
    best_epoch: int | None = None
    n_parameters: int | None = None
    training_seconds: float | None = None
    split_id: str | None = None  # the split it learnt (``split_identity``); None: not recorded

    @classmethod
    def from_saved(cls, saved: Mapping) -> ModelBundle:
        """The bundle of a saved mapping (keys this version does not know are logged and
        left out)."""
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(saved) - known):
            logger.warning("Model bundle keys not read by this version: %s", unknown)
        return cls(**{k: v for k, v in saved.items() if k in known})

    def to_saved(self) -> dict:
        """The mapping ``torch.save`` writes (tensors, lists and plain values only)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def load_model(bundle: ModelBundle) -> torch.nn.Module:
    """The saved model, rebuilt from its config, in eval mode."""
    model = create_model(ModelConfig(**bundle.config))
    model.load_state_dict(bundle.state_dict)
    return model.eval()
