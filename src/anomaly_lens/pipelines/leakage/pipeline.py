"""The ``leakage`` pipeline: cross-validation with random folds beside the grouped ``cv``.

``kedro run --pipelines=cv,leakage`` runs both; ``--pipelines=leakage`` alone compares
with the latest saved ``cv_metrics`` (and refuses one made with other parameters).
"""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines import train
from anomaly_lens.pipelines.cv.nodes import (
    assign_cv_folds,
    cross_validate,
    cross_validate_baseline,
    summarise_cv,
)
from anomaly_lens.pipelines.leakage.nodes import random_grouping, report_leakage


def create_pipeline(**kwargs) -> Pipeline:
    caching = train.create_pipeline().only_nodes("cache_images")
    return caching + Pipeline(
        [
            Node(random_grouping, "params:cv", "leaky_cv_settings", name="random_grouping"),
            Node(
                assign_cv_folds,
                inputs=["image_cache", "splits", "params:train", "leaky_cv_settings"],
                outputs="leaky_cv_folds",
                name="assign_leaky_cv_folds",
            ),
            Node(
                cross_validate,
                inputs=[
                    "image_cache",
                    "samples",
                    "manifest",
                    "leaky_cv_folds",
                    "class_names",
                    "params:pairing.views",
                    "params:train",
                ],
                outputs=["leaky_cv_predictions", "leaky_cv_history"],
                name="cross_validate_leaky",
            ),
            Node(
                cross_validate_baseline,
                inputs=["image_cache", "leaky_cv_folds", "params:train", "leaky_cv_settings"],
                outputs="leaky_cv_baseline_predictions",
                name="cross_validate_baseline_leaky",
            ),
            Node(
                summarise_cv,
                inputs=[
                    "leaky_cv_predictions",
                    "leaky_cv_baseline_predictions",
                    "leaky_cv_folds",
                    "params:train",
                    "leaky_cv_settings",
                ],
                outputs=["leaky_cv_metrics", "leaky_cv_mlflow_metrics"],
                name="summarise_leaky_cv",
            ),
            Node(
                report_leakage,
                inputs=["cv_metrics", "leaky_cv_metrics"],
                outputs="leakage_report",
                name="report_leakage",
            ),
        ]
    )
