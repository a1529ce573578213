"""The ``inference`` pipeline: the ingestion and pairing pipelines on the new images
(namespace ``inference``), then prediction with the trained ``model``."""

from kedro.pipeline import Node, Pipeline, pipeline

from anomaly_lens.pipelines import ingestion, pairing
from anomaly_lens.pipelines.inference.nodes import (
    measure_drift,
    predict_new_images,
    score_anomalies,
    summarise_inference,
)

NAMESPACE = "inference"


def create_pipeline(**kwargs) -> Pipeline:
    prepared = pipeline(
        ingestion.create_pipeline() + pairing.create_pipeline(),
        namespace=NAMESPACE,
        inputs={"raw_images": "inference_images", "raw_annotations": "inference_annotations"},
        outputs={"quarantine": "inference_quarantine"},
        parameters={"params:ingestion", "params:pairing"},
    )
    return prepared + Pipeline(
        [
            Node(
                predict_new_images,
                inputs=[
                    "model",
                    "calibrator",
                    "ood_detector",
                    "latest_onnx_model",
                    "inference.samples",
                    "inference.manifest",
                    "inference.masks",
                    "inference_images",
                    "params:inference",
                ],
                outputs=["inference.model_predictions", "prediction_masks"],
                name="predict_new_images",
                namespace=NAMESPACE,
            ),
            Node(
                score_anomalies,
                inputs=[
                    "inference.model_predictions",
                    "anomaly_detector",
                    "inference.samples",
                    "inference.manifest",
                    "inference.masks",
                    "inference_images",
                    "params:inference",
                ],
                outputs="predictions",
                name="score_anomalies",
                namespace=NAMESPACE,
            ),
            Node(
                measure_drift,
                inputs=[
                    "model",
                    "drift_reference",
                    "inference.samples",
                    "inference.manifest",
                    "inference.masks",
                    "inference_images",
                    "params:inference",
                ],
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
                    "model",
                    "calibrator",
                    "ood_detector",
                    "inference.drift",
                    "params:inference",
                ],
                outputs="inference_report",
                name="summarise_inference",
                namespace=NAMESPACE,
            ),
        ]
    )
