"""How far a set of new images is from the images a model was trained on: the kernel
inception distance (KID, torchmetrics) on the frozen features of a pretrained encoder
(Inception weights cannot be downloaded; the installed ImageNet weights stand in), and a
drift flag whose threshold comes from resamples of a set known to be alike: validation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torchmetrics.image.kid import KernelInceptionDistance

from anomaly_lens.ml.evaluation.baseline import pretrained_features


class _Features(torch.nn.Module):
    """The features are computed once (``pretrained_features``); KID reads them as given."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def kid(reference: np.ndarray, other: np.ndarray, subsets: int = 50, seed: int = 0) -> float:
    """The mean KID between two feature sets (N, C), over ``subsets`` seeded draws of
    ``min(100, N_reference, N_other)`` items each."""
    size = min(100, len(reference), len(other))
    if size < 2:
        raise ValueError("KID needs at least two images on each side")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "features kept in a buffer"
        metric = KernelInceptionDistance(feature=_Features(), subsets=subsets, subset_size=size)
    metric.update(torch.from_numpy(reference).float(), real=True)
    metric.update(torch.from_numpy(other).float(), real=False)
    torch.manual_seed(seed)
    mean, _ = metric.compute()
    return float(mean)


@dataclass
class DriftReference:
    """What the training images of one model look like to the encoder, to measure new
    images against: a seeded draw of train features, and validation features whose
    resamples set the threshold for a set of any size."""

    model_id: str
    backbone: str
    train: np.ndarray
    val: np.ndarray
    quantile: float = 0.99
    resamples: int = 30
    seed: int = 0
    val_kid: float = field(init=False)

    def __post_init__(self) -> None:
        self.val_kid = kid(self.train, self.val, seed=self.seed)

    def threshold(self, n_images: int) -> float:
        """The ``quantile`` of KID(train, a resample of ``n_images`` val images): what a
        set that size drawn like validation reaches by chance."""
        rng = np.random.default_rng(self.seed)
        size = max(2, min(n_images, len(self.val)))
        kids = [
            kid(self.train, self.val[rng.choice(len(self.val), size)], 10, self.seed + r)
            for r in range(self.resamples)
        ]
        return float(np.quantile(kids, self.quantile))

    def measure(self, images: np.ndarray) -> dict:
        """KID of new (N, H, W) images against train, the threshold for N images, the flag."""
        features = pretrained_features(images, self.backbone)
        distance, threshold = kid(self.train, features, seed=self.seed), self.threshold(len(images))
        return {
            "kid": distance,
            "threshold": threshold,
            "drift": bool(distance > threshold),
            "n_images": int(len(images)),
            "val_kid": self.val_kid,
            "rule": f"KID on frozen {self.backbone} features above the {self.quantile:.0%} "
            f"quantile of {self.resamples} validation resamples of the same size",
        }


def fit_reference(
    model_id: str,
    train_images: np.ndarray,
    val_images: np.ndarray,
    backbone: str,
    max_images: int = 300,
    seed: int = 0,
    **rule,
) -> DriftReference:
    """The reference of a model from its (N, H, W) train and val images (a seeded draw of
    at most ``max_images`` each: KID needs a few hundred, not all)."""
    rng = np.random.default_rng(seed)

    def draw(images: np.ndarray) -> np.ndarray:
        chosen = np.sort(rng.choice(len(images), min(max_images, len(images)), replace=False))
        return pretrained_features(images[chosen], backbone)

    train, val = draw(train_images), draw(val_images)
    return DriftReference(model_id, backbone, train, val, seed=seed, **rule)
