"""The ``cv_compare`` pipeline: two ``cv`` runs on the same folds, compared photo by photo."""

from anomaly_lens.pipelines.cv_compare.pipeline import create_pipeline

__all__ = ["create_pipeline"]
