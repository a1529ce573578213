"""OOD: detectors fitted on train, tested against corrupted, shifted and far-OOD sets."""

from anomaly_lens.pipelines.ood.pipeline import create_pipeline, ood_pipeline

__all__ = ["ood_pipeline", "create_pipeline"]
