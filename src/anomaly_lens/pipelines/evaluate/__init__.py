"""The ``evaluate`` pipeline: re-evaluate the saved model on val and test."""

from anomaly_lens.pipelines.evaluate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
