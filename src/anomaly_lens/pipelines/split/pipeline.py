"""The ``split`` pipeline."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.split.nodes import plot_split, split_samples, summarise_split


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                split_samples,
                inputs=["samples", "manifest", "class_names", "params:split"],
                outputs=["splits", "split_content_facts"],
                name="split_samples",
            ),
            Node(
                summarise_split,
                inputs=["splits", "split_content_facts", "samples", "class_names", "params:split"],
                outputs=["split_report", "split_table"],
                name="summarise_split",
            ),
            Node(plot_split, inputs="split_table", outputs="split_plot", name="plot_split"),
        ]
    )
