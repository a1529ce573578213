"""OOD detector ``patchcore``: the one-class scorer of ``ml.anomaly`` (anomalib's PatchCore
on the installed ImageNet weights), fitted on the training items' images of every class.
It reads pixels, not the network's features: a corrupted or foreign image has patches
unlike any training patch even where the classifier's features do not move.

Its fit and scores depend on the pixels alone, not on the model it sits beside, so they are
kept per content (``ml.content_memo``): the binary models of one run share the main model's training
images and OOD sets, and would otherwise fit and score the same detector five times."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anomaly_lens.ml.anomaly.detector import AnomalyDetector, AnomalyMethodSettings
from anomaly_lens.ml.content_memo import ContentMemo, content_digest
from anomaly_lens.ml.evaluation.detectors import Detector, register_detector

MAX_TRAIN_ITEMS = 200  # a seeded draw: the memory bank's cost grows with the patches


_FITS, _SCORES = ContentMemo(4), ContentMemo(512)


@dataclass
class FittedImages:
    """The fitted detector and the digest of the images it learnt (its identity)."""

    digest: str
    detector: AnomalyDetector


def _fit(pixels: np.ndarray, view_mask: np.ndarray, seed: int, digest: str) -> FittedImages:
    detector = AnomalyDetector(
        "patchcore",
        "tf_efficientnet_lite0",
        AnomalyMethodSettings(layers=["blocks.2", "blocks.4"], seed=seed),
        image_size=pixels.shape[-1],
        resize="as the model reads its items",
        views=[str(v) for v in range(pixels.shape[1])],
        split_id=f"train images {digest}",
    )
    rng = np.random.default_rng(seed)
    kept = np.sort(rng.permutation(len(pixels))[:MAX_TRAIN_ITEMS])
    return FittedImages(digest, detector.fit(pixels[kept][view_mask[kept]]))


@register_detector("patchcore")
class PatchCoreImages(Detector):
    """An item's score: its highest photo score (the view a corruption shows in)."""

    reads_images = True

    def fit_images(self, pixels, view_mask, scorer):
        digest = content_digest(pixels, view_mask, scorer.seed)
        return _FITS.get(digest, lambda: _fit(pixels, view_mask, scorer.seed, digest))

    def score_images(self, fitted, pixels, view_mask):
        def score():
            scores = np.full(view_mask.shape, -np.inf, dtype=np.float32)
            scores[view_mask] = fitted.detector.score(pixels[view_mask])[0]
            return scores.max(1)

        key = fitted.digest + content_digest(pixels, view_mask)
        return _SCORES.get(key, score).copy()

    def score(self, fitted, logits, features, label_type):
        raise ValueError("the patchcore OOD detector scores images: pass the items' pixels")
