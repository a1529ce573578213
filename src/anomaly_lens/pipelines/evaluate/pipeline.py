"""The ``evaluate`` pipeline (also the last part of ``train``)."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.evaluate.nodes import (
    evaluate_baseline,
    evaluate_model,
    headline_metrics,
    plot_evaluation,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                evaluate_baseline,
                inputs=["model", "image_cache", "splits", "params:train"],
                outputs="baseline_metrics",
                name="evaluate_baseline",
            ),
            Node(
                evaluate_model,
                inputs=["model", "image_cache", "splits", "baseline_metrics", "params:train"],
                outputs=["evaluation_metrics", "evaluation_predictions"],
                name="evaluate_model",
            ),
            Node(
                headline_metrics,
                inputs="evaluation_metrics",
                outputs="evaluation_mlflow_metrics",
                name="headline_metrics",
            ),
            Node(
                plot_evaluation,
                inputs=["evaluation_predictions", "evaluation_metrics"],
                outputs="evaluation_plots",
                name="plot_evaluation",
            ),
        ]
    )
