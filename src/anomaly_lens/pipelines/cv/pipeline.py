"""The ``cv`` pipeline: k-fold cross-validation of the ``train`` model over every sample."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines import train
from anomaly_lens.pipelines.cv.nodes import (
    assign_cv_folds,
    cross_validate,
    cross_validate_anomaly_scores,
    cross_validate_baseline,
    grouped_settings,
    nested_baseline,
    summarise_cv,
    summarise_gate,
)


def cross_validation() -> Pipeline:
    """Folds, one model per fold, the feature baseline and the pooled report, with the
    settings of ``cv_settings``: ``params:cv`` here; the ``leakage`` pipeline runs it in the
    namespace ``leaky`` with random folds."""
    return Pipeline(
        [
            Node(
                assign_cv_folds,
                inputs=["image_cache", "splits", "params:train", "cv_settings"],
                outputs="cv_folds",
                name="assign_cv_folds",
            ),
            Node(
                cross_validate,
                inputs=[
                    "image_cache",
                    "samples",
                    "manifest",
                    "cv_folds",
                    "class_names",
                    "params:pairing.views",
                    "params:train",
                    "cv_settings",
                ],
                outputs=["cv_predictions", "cv_history"],
                name="cross_validate",
            ),
            Node(
                cross_validate_baseline,
                inputs=["image_cache", "cv_folds", "params:train", "cv_settings"],
                outputs="cv_baseline_predictions",
                name="cross_validate_baseline",
            ),
            Node(
                summarise_cv,
                inputs=[
                    "cv_predictions",
                    "cv_baseline_predictions",
                    "cv_folds",
                    "params:train",
                    "cv_settings",
                ],
                outputs=["cv_metrics", "cv_mlflow_metrics"],
                name="summarise_cv",
            ),
        ]
    )


# What the cross-validation reads from the main chain, in either namespace.
SHARED_INPUTS = {"image_cache", "samples", "manifest", "splits", "class_names"}


def anomaly_gate() -> Pipeline:
    """The one-class detector of ``params:anomaly`` on the same folds, alone and as the
    gate in front of the network and the baseline (``ml.anomaly.gate``)."""
    return Pipeline(
        [
            Node(
                cross_validate_anomaly_scores,
                inputs=["image_cache", "cv_folds", "params:anomaly", "params:train"],
                outputs="cv_anomaly_scores",
                name="cross_validate_anomaly_scores",
            ),
            Node(
                summarise_gate,
                inputs=[
                    "cv_anomaly_scores",
                    "cv_predictions",
                    "cv_baseline_predictions",
                    "params:train",
                    "cv_settings",
                ],
                outputs=["cv_gate_predictions", "cv_gate_metrics", "cv_gate_mlflow_metrics"],
                name="summarise_gate",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    settings = Node(grouped_settings, "params:cv", "cv_settings", name="grouped_settings")
    return (
        train.create_pipeline().only_nodes("cache_images")
        + Pipeline([settings])
        + cross_validation()
        + anomaly_gate()
        + Pipeline(
            [
                Node(
                    nested_baseline,
                    inputs=["image_cache", "cv_folds", "params:train", "cv_settings"],
                    outputs=["cv_nested_metrics", "cv_nested_mlflow_metrics"],
                    name="nested_baseline",
                )
            ]
        )
    )
