"""The ``ingestion`` pipeline; the raw layout is chosen by ``ingestion.layout``."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.ingestion.nodes import (
    collect_records,
    inspect_raw_records,
    plot_quality,
    summarise_quality,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                collect_records,
                inputs=["raw_images", "raw_annotations", "params:ingestion"],
                outputs="raw_records",
                name="collect_records",
            ),
            Node(
                inspect_raw_records,
                inputs=["raw_records", "params:ingestion"],
                outputs=["manifest", "masks", "source_boxes", "quarantine", "class_names"],
                name="inspect_raw_records",
            ),
            Node(
                summarise_quality,
                inputs=["manifest", "quarantine", "class_names", "params:ingestion"],
                outputs="data_quality_report",
                name="summarise_quality",
            ),
            Node(
                plot_quality,
                inputs=["manifest", "quarantine"],
                outputs="data_quality_plot",
                name="plot_quality",
            ),
        ]
    )
