"""OOD: detectors fitted on train, tested against corrupted, shifted and far-OOD sets."""

from anomaly_lens.pipelines.ood.pipeline import create_pipeline

__all__ = ["create_pipeline"]
