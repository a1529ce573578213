"""XAI: Captum attributions of a trained model, scored against the masks, in an HTML report."""

from anomaly_lens.pipelines.xai.pipeline import create_pipeline

__all__ = ["create_pipeline"]
