"""OOD detector ``mahalanobis``: class-conditional Mahalanobis distance of the features."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_ood.detector import Mahalanobis

from anomaly_lens.ml.evaluation.detectors import Detector, register_detector


@register_detector("mahalanobis")
class ClassMahalanobis(Detector):
    """Distance to the nearest class-conditional mean of the features (pytorch-ood)."""

    def fit(self, logits, features, groups, scorer):
        _, contiguous = np.unique(groups, return_inverse=True)
        return Mahalanobis(None).fit_features(features.float(), torch.from_numpy(contiguous))

    def score(self, fitted, logits, features, label_type):
        return fitted.predict_features(features.float()).cpu().numpy()
