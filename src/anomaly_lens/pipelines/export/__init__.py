"""Export: the trained model as one ONNX graph, checked against PyTorch."""

from anomaly_lens.pipelines.export.pipeline import create_pipeline

__all__ = ["create_pipeline"]
