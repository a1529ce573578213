"""Nodes of the ``serve`` pipeline."""

from __future__ import annotations

from anomaly_lens.ml.anomaly.detector import AnomalyDetector
from anomaly_lens.ml.evaluation.ood import OODScorer
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.ml.serving.predictor import Predictor, ServedModel, ServingSettings
from anomaly_lens.parameters import parse_block


def package_predictor(
    model: ModelBundle,
    calibrator: dict | None,
    ood_detector: OODScorer | None,
    anomaly_detector: AnomalyDetector | None,
    params: dict,
) -> ServedModel:
    """``mlflow_model``: the predictor ``inference`` uses (the model, the calibrator and OOD
    detector made from it, the one-class detector of its split, the ``inference`` decision
    rule) as an MLflow pyfunc."""
    settings = parse_block(ServingSettings, params)
    predictor = Predictor.of(model, calibrator, ood_detector, settings, anomaly_detector)
    return ServedModel(predictor)
