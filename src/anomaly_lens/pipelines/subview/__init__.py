"""Sub-view: train on attribution-guided crops and compare with the full-view model."""

from anomaly_lens.pipelines.subview.pipeline import create_pipeline

__all__ = ["create_pipeline"]
