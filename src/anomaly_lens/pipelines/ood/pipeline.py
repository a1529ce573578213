"""The ``ood`` pipeline: fit detectors on train, score test and the OOD sets, report."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines import serve
from anomaly_lens.pipelines.ood.nodes import (
    choose_ood_detector,
    fit_drift_reference,
    fit_ood_detectors,
    measure_split_distances,
    plot_ood_scores,
    score_ood_sets,
    summarise_ood,
)


def ood_pipeline() -> Pipeline:
    """The pipeline without the served model (what each ``binary.<type>`` namespace runs)."""
    return Pipeline(
        [
            Node(
                fit_ood_detectors,
                inputs=["model", "image_cache", "splits", "params:ood"],
                outputs="ood_detectors",
                name="fit_ood_detectors",
            ),
            Node(
                choose_ood_detector,
                inputs=["ood_detectors", "model", "image_cache", "splits", "params:ood"],
                outputs="ood_selection",
                name="choose_ood_detector",
            ),
            Node(
                score_ood_sets,
                inputs=["ood_detectors", "model", "image_cache", "splits", "params:ood"],
                outputs="ood_scores",
                name="score_ood_sets",
            ),
            Node(
                summarise_ood,
                inputs=["ood_scores", "ood_detectors", "ood_selection", "params:ood"],
                outputs=["ood_detector", "ood_metrics", "ood_table", "ood_mlflow_metrics"],
                name="summarise_ood",
            ),
            Node(
                plot_ood_scores,
                inputs="ood_scores",
                outputs="ood_score_histograms",
                name="plot_ood_scores",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    drift = Node(
        fit_drift_reference,
        inputs=["model", "image_cache", "splits", "params:ood"],
        outputs="drift_reference",
        name="fit_drift_reference",
    )
    split_distances = Node(
        measure_split_distances,
        inputs=["drift_reference", "model", "image_cache", "splits", "params:ood"],
        outputs="split_distances",
        name="measure_split_distances",
    )
    return ood_pipeline() + Pipeline([drift, split_distances]) + serve.create_pipeline()
