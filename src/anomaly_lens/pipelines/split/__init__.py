"""The ``split`` pipeline."""

from anomaly_lens.pipelines.split.pipeline import create_pipeline

__all__ = ["create_pipeline"]
