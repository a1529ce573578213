"""The ``inference`` pipeline: the ingestion and pairing pipelines on the new images
(namespace ``inference``), then prediction with the trained ``model``."""

from kedro.pipeline import Node, Pipeline, pipeline

from anomaly_lens.pipelines import ingestion, pairing
from anomaly_lens.pipelines.inference.nodes import (
    measure_drift,
    predict_new_images,
    summarise_inference,
)

NAMESPACE = "inference"


# The new images as the inference namespace's ingestion and pairing leave them.
NEW_IMAGES = ["inference.samples", "inference.manifest", "inference.masks", "inference_images"]


def _prepared() -> Pipeline:
    """Ingestion and pairing of the new images (namespace ``inference``)."""
    return pipeline(
        ingestion.create_pipeline() + pairing.create_pipeline(),
        namespace=NAMESPACE,
        inputs={"raw_images": "inference_images", "raw_annotations": "inference_annotations"},
        outputs={"quarantine": "inference_quarantine"},
        parameters={"params:ingestion", "params:pairing"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    artefacts = ["model", "calibrator", "ood_detector", "anomaly_detector"]
    nodes = [
        Node(
            predict_new_images,
            inputs=[*artefacts, "latest_onnx_model", *NEW_IMAGES, "params:inference"],
            outputs=["predictions", "prediction_masks", "prediction_anomaly_maps"],
            name="predict_new_images",
            namespace=NAMESPACE,  # the node's name only
        ),
        Node(
            measure_drift,
            inputs=["model", "drift_reference", *NEW_IMAGES, "params:inference"],
            outputs="inference.drift",
            name="measure_drift",
            namespace=NAMESPACE,
        ),
        Node(
            summarise_inference,
            inputs=[
                "predictions",
                "inference.manifest",
                "inference_quarantine",
                *artefacts,
                "inference.drift",
                "params:inference",
            ],
            outputs="inference_report",
            name="summarise_inference",
            namespace=NAMESPACE,
        ),  # fmt: skip
    ]
    return _prepared() + Pipeline(nodes)
