"""The ``cv`` pipeline: cross-validated, out-of-fold evaluation."""

from anomaly_lens.pipelines.cv.pipeline import create_pipeline

__all__ = ["create_pipeline"]
