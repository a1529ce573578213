"""OOD detector ``energy``: the logits' free energy."""

from __future__ import annotations

from pytorch_ood.detector import EnergyBased

from anomaly_lens.ml.evaluation.detectors import Detector, register_detector


@register_detector("energy")
class Energy(Detector):
    """The logits' free energy (pytorch-ood)."""

    def score(self, fitted, logits, features, label_type):
        return EnergyBased.score(logits).numpy()
