"""OOD detector ``msp``: maximum softmax probability, or the maximum sigmoid for a multi-label model."""

from __future__ import annotations

import torch
from pytorch_ood.detector import MaxSoftmax

from anomaly_lens.ml.evaluation.detectors import Detector, register_detector


@register_detector("msp")
class MaxProbability(Detector):
    """Maximum softmax probability (pytorch-ood), or the maximum sigmoid for multi-label."""

    def score(self, fitted, logits, features, label_type):
        if label_type == "multiclass":
            return MaxSoftmax.score(logits).numpy()
        return (-torch.sigmoid(logits).max(1).values).numpy()
