"""Calibration: temperature scaling and decision thresholds fitted on validation."""

from anomaly_lens.pipelines.calibration.pipeline import calibration_pipeline, create_pipeline

__all__ = ["calibration_pipeline", "create_pipeline"]
