"""Ingestion: raw layer -> manifest, masks, quarantine and a data-quality report."""

from anomaly_lens.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
