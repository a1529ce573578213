"""OOD detector ``patchcore``: the one-class scorer of ``ml.anomaly`` (anomalib's PatchCore
on the installed ImageNet weights), fitted on the training items' images of every class.
It reads pixels, not the network's features: a corrupted or foreign image has patches
unlike any training patch even where the classifier's features do not move."""

from __future__ import annotations

import numpy as np

from anomaly_lens.ml.anomaly.detector import AnomalyDetector, AnomalyMethodSettings
from anomaly_lens.ml.evaluation.detectors import Detector, register_detector

MAX_TRAIN_ITEMS = 200  # a seeded draw: the memory bank's cost grows with the patches


@register_detector("patchcore")
class PatchCoreImages(Detector):
    """An item's score: its highest photo score (the view a corruption shows in)."""

    reads_images = True

    def fit_images(self, pixels, view_mask, scorer):
        detector = AnomalyDetector(
            "patchcore",
            "tf_efficientnet_lite0",
            AnomalyMethodSettings(layers=["blocks.2", "blocks.4"], seed=scorer.seed),
            image_size=pixels.shape[-1],
            resize="as the model reads its items",
            views=[str(v) for v in range(pixels.shape[1])],
            split_id=str(scorer.model_id),
        )
        rng = np.random.default_rng(scorer.seed)
        kept = np.sort(rng.permutation(len(pixels))[:MAX_TRAIN_ITEMS])
        return detector.fit(pixels[kept][view_mask[kept]])

    def score_images(self, fitted, pixels, view_mask):
        scores = np.full(view_mask.shape, -np.inf, dtype=np.float32)
        scores[view_mask] = fitted.score(pixels[view_mask])[0]
        return scores.max(1)

    def score(self, fitted, logits, features, label_type):
        raise ValueError("the patchcore OOD detector scores images: pass the items' pixels")
