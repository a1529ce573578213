"""Calibration: temperature scaling and decision thresholds fitted on validation."""

from anomaly_lens.pipelines.calibration.pipeline import create_pipeline

__all__ = ["create_pipeline"]
