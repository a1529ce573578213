"""The ``xai`` pipeline: explain a trained model on chosen test samples, score the
explanations against the masks, and write the HTML report."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.xai.nodes import (
    explain_selection,
    map_explained_anomalies,
    render_xai_report,
    score_explanations,
    select_explained,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                select_explained,
                inputs=["evaluation_predictions", "model", "image_cache", "splits", "params:xai"],
                outputs="xai_selection",
                name="select_explained",
            ),
            Node(
                explain_selection,
                inputs=["model", "image_cache", "xai_selection", "params:xai"],
                outputs="xai_attributions",
                name="explain_selection",
            ),
            Node(
                score_explanations,
                inputs=["xai_attributions", "raw_metadata", "params:xai"],
                outputs=["xai_metrics", "xai_mlflow_metrics"],
                name="score_explanations",
            ),
            Node(
                map_explained_anomalies,
                inputs=["xai_attributions", "anomaly_detector", "splits", "params:xai"],
                outputs="xai_anomaly_maps",
                name="map_explained_anomalies",
            ),
            Node(
                render_xai_report,
                inputs=[
                    "xai_attributions",
                    "xai_metrics",
                    "latest_subview_report",
                    "xai_anomaly_maps",
                    "params:xai",
                ],
                outputs="xai_report",
                name="render_xai_report",
            ),
        ]
    )
