"""The ``evaluate`` pipeline (also the last part of ``train``)."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.train.nodes import evaluate_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate_model,
                inputs=["model", "image_cache", "splits", "params:train"],
                outputs="evaluation_metrics",
                name="evaluate_model",
            )
        ]
    )
