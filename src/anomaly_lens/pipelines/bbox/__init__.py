"""The ``bbox`` pipeline."""

from anomaly_lens.pipelines.bbox.pipeline import create_pipeline

__all__ = ["create_pipeline"]
