"""The ``train`` pipeline: cache images, fit, evaluate (model and its two baselines),
serve (the model as an MLflow pyfunc)."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.ml.training.curves import plot_training_curves
from anomaly_lens.pipelines import evaluate, serve
from anomaly_lens.pipelines.train.nodes import (
    cache_images,
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
                plot_training_curves,
                inputs="training_history",
                outputs="training_curves",
                name="plot_training_curves",
            ),
        ]
    )
    return training + evaluate.create_pipeline() + serve.create_pipeline()
