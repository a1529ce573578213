"""The ``train`` pipeline: cache images, fit, package the model for MLflow, evaluate (model
and random-forest baseline)."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines import evaluate
from anomaly_lens.pipelines.train.nodes import (
    cache_images,
    evaluate_baseline,
    package_model,
    plot_training_curves,
    train_model,
)

PREPARED = ["samples", "manifest"]


def create_pipeline(**kwargs) -> Pipeline:
    training = Pipeline(
        [
            Node(
                cache_images,
                inputs=[
                    *PREPARED,
                    "masks",
                    "raw_images",
                    "class_names",
                    "params:pairing.views",
                    "params:train",
                ],
                outputs="image_cache",
                name="cache_images",
            ),
            Node(
                train_model,
                inputs=[
                    "image_cache",
                    *PREPARED,
                    "splits",
                    "class_names",
                    "params:pairing.views",
                    "params:train",
                ],
                outputs=["model", "training_history"],
                name="train_model",
            ),
            Node(
                package_model,
                inputs=["model", "params:inference"],
                outputs="mlflow_model",
                name="package_model",
            ),
            Node(
                plot_training_curves,
                inputs="training_history",
                outputs="training_curves",
                name="plot_training_curves",
            ),
            Node(
                evaluate_baseline,
                inputs=["image_cache", "splits", "params:train"],
                outputs="baseline_metrics",
                name="evaluate_baseline",
            ),
        ]
    )
    return training + evaluate.create_pipeline()
