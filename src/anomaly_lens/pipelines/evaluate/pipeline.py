"""The ``evaluate`` pipeline (also the last part of ``train``)."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.train.nodes import evaluate_model, plot_evaluation


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate_model,
                inputs=["model", "image_cache", "splits", "params:train"],
                outputs=["evaluation_metrics", "evaluation_predictions"],
                name="evaluate_model",
            ),
            Node(
                plot_evaluation,
                inputs=["evaluation_predictions", "evaluation_metrics"],
                outputs="evaluation_plots",
                name="plot_evaluation",
            ),
        ]
    )
