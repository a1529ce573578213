"""The ``anomaly`` pipeline: a detector learnt from normal images only (PatchCore, PaDiM),
threshold on validation, scored on test, with maps."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.anomaly.nodes import (
    evaluate_anomaly_detector,
    fit_anomaly_detector,
    plot_anomaly_maps,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                fit_anomaly_detector,
                inputs=["image_cache", "splits", "params:anomaly", "params:train"],
                outputs="anomaly_detector",
                name="fit_anomaly_detector",
            ),
            Node(
                evaluate_anomaly_detector,
                inputs=["anomaly_detector", "image_cache", "splits", "params:anomaly"],
                outputs=["anomaly_scores", "anomaly_metrics", "anomaly_mlflow_metrics"],
                name="evaluate_anomaly_detector",
            ),
            Node(
                plot_anomaly_maps,
                inputs=["anomaly_detector", "image_cache", "splits", "params:anomaly"],
                outputs="anomaly_maps",
                name="plot_anomaly_maps",
            ),
        ]
    )
