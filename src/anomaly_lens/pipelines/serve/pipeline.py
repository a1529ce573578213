"""The ``serve`` pipeline: the model with its own calibrator, OOD detector and one-class
detector logged to the MLflow run as one pyfunc. ``train``, ``calibration`` and ``ood`` end
with it, so the served model of a run holds whatever of them that run (or an earlier one)
made for the model; in ``kedro run`` it runs once, after all of them and ``anomaly``."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.serve.nodes import package_predictor


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                package_predictor,
                inputs=[
                    "model",
                    "calibrator",
                    "ood_detector",
                    "anomaly_detector",
                    "params:inference",
                ],
                outputs="mlflow_model",
                name="package_predictor",
            )
        ]
    )
