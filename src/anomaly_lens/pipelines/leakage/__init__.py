"""The ``leakage`` pipeline: how much a random, leaky split inflates the figures."""

from anomaly_lens.pipelines.leakage.pipeline import create_pipeline

__all__ = ["create_pipeline"]
