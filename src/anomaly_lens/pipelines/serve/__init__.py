"""The ``serve`` pipeline: the predictor as an MLflow pyfunc."""

from anomaly_lens.pipelines.serve.pipeline import create_pipeline

__all__ = ["create_pipeline"]
