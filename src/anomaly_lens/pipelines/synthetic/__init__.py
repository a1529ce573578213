"""Embedded default dataset: writes synthetic multi-view raw data to ``data/01_raw``."""

from anomaly_lens.pipelines.synthetic.pipeline import create_pipeline

__all__ = ["create_pipeline"]
