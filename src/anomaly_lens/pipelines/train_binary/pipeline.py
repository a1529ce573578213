"""The ``train_binary`` pipeline: one namespace ``binary.<type>`` per anomaly type, each the
same pipeline (the type's task and model, then ``evaluate``, ``calibration``, ``ood`` and
``xai`` as for the main model), and ``compare_binary`` over all of them.

The types are read from the configuration when the pipelines load (``binary.types``, else
``ingestion.classes``, else the demo's anomaly types, else the classes the last ingestion
found): see ``anomaly_lens.context``.
"""

from kedro.pipeline import Node, Pipeline, pipeline

from anomaly_lens import pipeline_registry
from anomaly_lens.pipelines import calibration, evaluate, ood, xai
from anomaly_lens.pipelines.train_binary.nodes import (
    binary_headline_metrics,
    compare_binary,
    select_binary_task,
    train_binary_model,
)

# Inputs every namespace reads from the main chain, not from its own namespace.
SHARED_INPUTS = {"full_image_cache": "image_cache", "full_splits": "splits"}
SHARED_PARAMETERS = ("binary", "train", "calibration", "ood", "xai")


def binary_model_pipeline() -> Pipeline:
    """One anomaly type's pipeline; ``anomaly_type`` is its namespace's catalog entry."""
    task = Pipeline(
        [
            Node(
                select_binary_task,
                inputs=["full_image_cache", "full_splits", "anomaly_type", "params:binary"],
                outputs=["image_cache", "splits"],
                name="select_binary_task",
            ),
            Node(
                train_binary_model,
                inputs=["image_cache", "splits", "anomaly_type", "params:train", "params:binary"],
                outputs=["model", "training_history"],
                name="train_binary_model",
            ),
        ]
    )
    downstream = (
        evaluate.create_pipeline()
        + calibration.calibration_pipeline()
        + ood.ood_pipeline()
        + xai.create_pipeline()
    )
    return task + downstream


def no_anomaly_types() -> dict:
    """Stands in for the namespaces where no type is known yet: says what to do."""
    raise ValueError(
        "train_binary has no anomaly types: set binary.types (or ingestion.classes), or run "
        "the ingestion pipeline once so that the classes it finds are known"
    )


def create_pipeline(**kwargs) -> Pipeline:
    types = pipeline_registry.binary_types()
    if not types:
        return Pipeline(
            [Node(no_anomaly_types, None, "binary_comparison", name="no_anomaly_types")]
        )
    per_type = [
        pipeline(
            binary_model_pipeline(),
            namespace=f"binary.{name}",
            # the main one-class detector: its maps beside a binary model's explanations
            # only where the binary split is the one it learnt (else "not applied")
            inputs={
                **SHARED_INPUTS,
                "raw_metadata": "raw_metadata",
                "anomaly_detector": "anomaly_detector",
            },
            parameters={f"params:{p}": f"params:{p}" for p in SHARED_PARAMETERS},
        )
        for name in types
    ]
    parts = {
        f"{name}_{part}": f"binary.{name}.{part}"
        for name in types
        for part in ("evaluation_predictions", "model")
    }
    comparison = pipeline(
        [
            Node(
                compare_binary,
                inputs=[
                    "evaluation_predictions",
                    "model",
                    "image_cache",
                    "splits",
                    "params:train",
                    "params:binary",
                    *parts,
                ],
                outputs=["binary_comparison", "binary_comparison_table", "binary_comparison_plot"],
                name="compare_binary",
            ),
            Node(
                binary_headline_metrics,
                inputs="binary_comparison",
                outputs="binary_mlflow_metrics",
                name="binary_headline_metrics",
            ),
        ],
        inputs=parts,
        parameters={"params:train": "params:train", "params:binary": "params:binary"},
    )
    return sum(per_type, Pipeline([])) + comparison
