"""Anomaly detection learnt from normal images only, scored on validation and test."""

from anomaly_lens.pipelines.anomaly.pipeline import create_pipeline

__all__ = ["create_pipeline"]
