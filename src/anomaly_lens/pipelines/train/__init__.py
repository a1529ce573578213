"""The ``train`` pipeline: image cache, Lightning training, evaluation."""

from anomaly_lens.pipelines.train.pipeline import create_pipeline

__all__ = ["create_pipeline"]
