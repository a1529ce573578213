"""The ``cv`` pipeline: k-fold cross-validation of the ``train`` model over every sample."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines import train
from anomaly_lens.pipelines.cv.nodes import (
    assign_cv_folds,
    cross_validate,
    cross_validate_baseline,
    summarise_cv,
)


def create_pipeline(**kwargs) -> Pipeline:
    caching = train.create_pipeline().only_nodes("cache_images")
    return caching + Pipeline(
        [
            Node(
                assign_cv_folds,
                inputs=["image_cache", "splits", "params:train", "params:cv"],
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
                ],
                outputs=["cv_predictions", "cv_history"],
                name="cross_validate",
            ),
            Node(
                cross_validate_baseline,
                inputs=["image_cache", "cv_folds", "params:train", "params:cv"],
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
                    "params:cv",
                ],
                outputs=["cv_metrics", "cv_mlflow_metrics"],
                name="summarise_cv",
            ),
        ]
    )
