"""Inference: a folder of new images -> inspected, paired, predicted, reported."""

from anomaly_lens.pipelines.inference.pipeline import create_pipeline

__all__ = ["create_pipeline"]
