"""How far one set of images is from another: the kernel and Fréchet inception distances
(KID, FID; torchmetrics) on the frozen features of a pretrained encoder (Inception weights
cannot be downloaded; the installed ImageNet weights stand in), overall and per class, and
a drift flag whose threshold comes from resamples of a set known to be alike: validation.
KID is unbiased at any set size and carries the flag; FID, biased upwards on a few hundred
images, is reported beside it for comparison with published figures of the same encoder.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from anomaly_lens.ml.evaluation.baseline import pretrained_features


class _Features(torch.nn.Module):
    """The features are computed once (``pretrained_features``); the metric reads them as
    given (``num_features``: their width, which FID would otherwise probe with an image)."""

    def __init__(self, num_features: int = 0):
        super().__init__()
        self.num_features = num_features

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


def fid(reference: np.ndarray, other: np.ndarray) -> float:
    """The FID between two feature sets (N, C) of at least two items each."""
    if min(len(reference), len(other)) < 2:
        raise ValueError("FID needs at least two images on each side")
    metric = FrechetInceptionDistance(feature=_Features(reference.shape[1]))
    metric.update(torch.from_numpy(reference).double(), real=True)
    metric.update(torch.from_numpy(other).double(), real=False)
    return float(metric.compute())


def distances(reference: np.ndarray, other: np.ndarray, seed: int = 0) -> dict:
    """KID and FID of two feature sets, with their sizes; a reason where a side is too small."""
    sizes = {"n_reference": int(len(reference)), "n_other": int(len(other))}
    if min(len(reference), len(other)) < 2:
        return {**sizes, "reason": "fewer than two images on a side"}
    return {"kid": kid(reference, other, seed=seed), "fid": fid(reference, other), **sizes}


def class_distances(
    reference: np.ndarray,
    reference_classes: list[set[str]],
    other: np.ndarray,
    other_classes: list[set[str]],
    seed: int = 0,
) -> dict[str, dict]:
    """``distances`` per class between the images of that class on each side (an image with
    several labels counts in each of them)."""
    names = sorted(set().union(*reference_classes, *other_classes))
    return {
        name: distances(
            reference[[name in c for c in reference_classes]],
            other[[name in c for c in other_classes]],
            seed,
        )
        for name in names
    }


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
            "fid": fid(self.train, features) if len(features) >= 2 else None,
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
