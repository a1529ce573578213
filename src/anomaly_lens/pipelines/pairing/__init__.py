"""The ``pairing`` pipeline."""

from anomaly_lens.pipelines.pairing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
