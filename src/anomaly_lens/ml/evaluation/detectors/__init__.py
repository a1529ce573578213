"""OOD detectors, one module each, registered by name (``register_detector``): the names
``ood.detector`` accepts (``DETECTORS``). Every module of this package is imported here,
so adding a detector is one file (and its test). Every score is an outlier score: larger
means more likely OOD."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


class Detector:
    """One kind of OOD detector, registered by name (``register_detector``): what it fits
    on the training items' logits and features, and how it scores items (larger: more
    likely OOD). Stateless: what it fits is returned and kept by ``OODScorer``.

    ``reads_images``: the detector reads the items' model-input images instead
    (``fit_images``, ``score_images``): a one-class model of the training images."""

    reads_images = False

    def fit_images(self, pixels: np.ndarray, view_mask: np.ndarray, scorer: Any) -> Any:
        """What scoring needs from (N, V, H, W) uint8 training images and their view mask."""
        raise NotImplementedError

    def score_images(self, fitted: Any, pixels: np.ndarray, view_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(
        self, logits: torch.Tensor, features: torch.Tensor, groups: np.ndarray, scorer: Any
    ) -> Any:
        """What scoring needs (nothing by default); ``groups``: a class index per item."""
        return None

    def score(
        self, fitted: Any, logits: torch.Tensor, features: torch.Tensor, label_type: str
    ) -> np.ndarray:
        raise NotImplementedError


OOD_DETECTORS: dict[str, Detector] = {}


def register_detector(name: str) -> Callable[[type[Detector]], type[Detector]]:
    """Class decorator: the detector becomes available as ``ood.detector: <name>``."""

    def register(cls: type[Detector]) -> type[Detector]:
        OOD_DETECTORS[name] = cls()
        return cls

    return register


# Every module of this package registers its detector on import.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

DETECTORS = tuple(OOD_DETECTORS)  # the names ``ood.detector`` accepts
