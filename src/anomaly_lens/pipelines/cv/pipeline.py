"""The ``cv`` pipeline: k-fold cross-validation of the ``train`` model over every sample."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines import train
from anomaly_lens.pipelines.cv.nodes import (
    assign_cv_folds,
    cross_validate,
    cross_validate_baseline,
    summarise_cv,
)


def cross_validation(prefix: str = "", settings: str = "params:cv") -> Pipeline:
    """Folds, one model per fold, the feature baseline and the pooled report, read from
    the ``settings`` dataset and written to ``{prefix}cv_*`` entries (``leaky_`` for the
    ``leakage`` pipeline's random folds)."""
    folds = f"{prefix}cv_folds"
    predictions = f"{prefix}cv_predictions"
    baseline = f"{prefix}cv_baseline_predictions"
    return Pipeline(
        [
            Node(
                assign_cv_folds,
                inputs=["image_cache", "splits", "params:train", settings],
                outputs=folds,
                name=f"{prefix}assign_cv_folds",
            ),
            Node(
                cross_validate,
                inputs=[
                    "image_cache",
                    "samples",
                    "manifest",
                    folds,
                    "class_names",
                    "params:pairing.views",
                    "params:train",
                    settings,
                ],
                outputs=[predictions, f"{prefix}cv_history"],
                name=f"{prefix}cross_validate",
            ),
            Node(
                cross_validate_baseline,
                inputs=["image_cache", folds, "params:train", settings],
                outputs=baseline,
                name=f"{prefix}cross_validate_baseline",
            ),
            Node(
                summarise_cv,
                inputs=[predictions, baseline, folds, "params:train", settings],
                outputs=[f"{prefix}cv_metrics", f"{prefix}cv_mlflow_metrics"],
                name=f"{prefix}summarise_cv",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    return train.create_pipeline().only_nodes("cache_images") + cross_validation()
