"""OOD detector ``isolation_forest``: scikit-learn's IsolationForest on the features."""

from __future__ import annotations

from sklearn.ensemble import IsolationForest

from anomaly_lens.ml.evaluation.detectors import Detector, register_detector


@register_detector("isolation_forest")
class Isolation(Detector):
    """scikit-learn's IsolationForest on the features."""

    def fit(self, logits, features, groups, scorer):
        return IsolationForest(random_state=scorer.seed).fit(features.numpy())

    def score(self, fitted, logits, features, label_type):
        return -fitted.score_samples(features.numpy())
