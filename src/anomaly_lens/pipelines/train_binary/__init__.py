"""train_binary: one binary classifier per anomaly type, compared with the multi-label model."""

from anomaly_lens.pipelines.train_binary.pipeline import create_pipeline

__all__ = ["create_pipeline"]
