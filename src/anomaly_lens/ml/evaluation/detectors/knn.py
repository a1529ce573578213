"""OOD detector ``knn``: distance to the k-th nearest training feature."""

from __future__ import annotations

import torch
from pytorch_ood.detector import KNN

from anomaly_lens.ml.evaluation.detectors import Detector, register_detector


@register_detector("knn")
class NearestNeighbours(Detector):
    """Distance to the k-th nearest training feature (pytorch-ood; ``ood.neighbours``)."""

    def fit(self, logits, features, groups, scorer):
        k = min(scorer.neighbours, len(features) - 1)
        return KNN(None, k=k).fit_features(
            features.float(), torch.zeros(len(features), dtype=torch.long)
        )

    def score(self, fitted, logits, features, label_type):
        return fitted.predict_features(features.float()).cpu().numpy()
