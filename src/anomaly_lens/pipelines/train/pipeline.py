"""The ``train`` pipeline: cache images, fit, evaluate."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines import evaluate
from anomaly_lens.pipelines.train.nodes import cache_images, plot_training_curves, train_model


def create_pipeline(**kwargs) -> Pipeline:
    return (
        Pipeline(
            [
                Node(
                    cache_images,
                    inputs=[
                        "samples",
                        "manifest",
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
                        "samples",
                        "manifest",
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
        + evaluate.create_pipeline()
    )
