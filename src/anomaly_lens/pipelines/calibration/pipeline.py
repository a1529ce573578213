"""The ``calibration`` pipeline: ``evaluation_predictions`` -> ``calibrator`` and its report."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines import serve
from anomaly_lens.pipelines.calibration.nodes import calibrate, plot_reliability


def calibration_pipeline() -> Pipeline:
    """The pipeline without the served model (what each ``binary.<type>`` namespace runs)."""
    return Pipeline(
        [
            Node(
                calibrate,
                inputs=["evaluation_predictions", "model", "params:calibration"],
                outputs=["calibrator", "calibration_metrics", "calibration_mlflow_metrics"],
                name="calibrate",
            ),
            Node(
                plot_reliability,
                inputs=["evaluation_predictions", "calibrator"],
                outputs="reliability_plot",
                name="plot_reliability",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    return calibration_pipeline() + serve.create_pipeline()
