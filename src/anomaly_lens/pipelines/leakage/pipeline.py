"""The ``leakage`` pipeline: cross-validation with random folds beside the grouped ``cv``.

``kedro run --pipelines=cv,leakage`` runs both; ``--pipelines=leakage`` alone compares
with the latest saved ``cv_metrics`` (and refuses one made with other parameters).
"""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines import train
from anomaly_lens.pipelines.cv.pipeline import cross_validation
from anomaly_lens.pipelines.leakage.nodes import random_grouping, report_leakage


def create_pipeline(**kwargs) -> Pipeline:
    return (
        train.create_pipeline().only_nodes("cache_images")
        + Pipeline(
            [Node(random_grouping, "params:cv", "leaky_cv_settings", name="random_grouping")]
        )
        + cross_validation(prefix="leaky_", settings="leaky_cv_settings")
        + Pipeline(
            [
                Node(
                    report_leakage,
                    inputs=["cv_metrics", "leaky_cv_metrics"],
                    outputs="leakage_report",
                    name="report_leakage",
                )
            ]
        )
    )
