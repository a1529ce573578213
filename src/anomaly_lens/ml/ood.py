"""Where OOD detectors pickled before the library was grouped by stage find their class
(``ood_detector.pkl`` names ``anomaly_lens.ml.ood.OODScorer``); new code imports
``anomaly_lens.ml.evaluation.ood``."""

from anomaly_lens.ml.evaluation.ood import OODScorer

__all__ = ["OODScorer"]
