"""The ``subview`` pipeline (by name only): regions of interest from attributions on the
train split, a cache of crops, a model trained and evaluated on it (the ``evaluate``
pipeline under the ``subview`` namespace), and the comparison with the full-view model."""

from kedro.pipeline import Node, Pipeline, pipeline

from anomaly_lens.pipelines import evaluate
from anomaly_lens.pipelines.subview.nodes import (
    attribution_regions,
    compare_subview,
    crop_to_regions,
    train_on_crops,
)


def create_pipeline(**kwargs) -> Pipeline:
    cropping = Pipeline(
        [
            Node(
                attribution_regions,
                inputs=["model", "image_cache", "splits", "params:subview"],
                outputs="subview_regions",
                name="attribution_regions",
                namespace="subview",
            ),
            Node(
                crop_to_regions,
                inputs=["image_cache", "subview_regions"],
                outputs="subview.image_cache",
                name="crop_to_regions",
                namespace="subview",
            ),
            Node(
                train_on_crops,
                inputs=["subview.image_cache", "splits", "params:train"],
                outputs=["subview.model", "subview.training_history"],
                name="train_on_crops",
                namespace="subview",
            ),
        ]
    )
    evaluation = pipeline(
        evaluate.create_pipeline(),
        namespace="subview",
        inputs={"splits": "splits"},
        parameters={"params:train": "params:train"},
    )
    comparison = pipeline(  # outside the namespace: it reads the full-view model's figures
        [
            Node(
                compare_subview,
                inputs=["evaluation_metrics", "cropped_metrics", "subview_regions"],
                outputs="subview_report",
                name="compare_subview",
            )
        ],
        inputs={"cropped_metrics": "subview.evaluation_metrics"},
    )
    return cropping + evaluation + comparison
