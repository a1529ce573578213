"""The ``export`` pipeline: ``model`` -> ``onnx_model`` and its parity report."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.export.nodes import export_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                export_model,
                inputs=["model", "calibrator", "image_cache", "splits", "params:export"],
                outputs=["onnx_model", "export_report"],
                name="export_model",
            )
        ]
    )
