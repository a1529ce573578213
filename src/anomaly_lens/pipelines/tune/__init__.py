"""tune: an Optuna study over training settings for the main model or one binary type."""

from anomaly_lens.pipelines.tune.pipeline import create_pipeline

__all__ = ["create_pipeline"]
