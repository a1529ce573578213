"""The ``bbox`` pipeline."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.bbox.nodes import (
    build_boxes,
    plot_box_sizes,
    render_previews,
    summarise_boxes,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                build_boxes,
                inputs=["masks", "source_boxes", "manifest", "params:bbox"],
                outputs=["boxes", "dropped_specks"],
                name="build_boxes",
            ),
            Node(
                summarise_boxes,
                inputs=["boxes", "dropped_specks", "params:bbox"],
                outputs="bbox_report",
                name="summarise_boxes",
            ),
            Node(plot_box_sizes, inputs="boxes", outputs="bbox_sizes_plot", name="plot_box_sizes"),
            Node(
                render_previews,
                inputs=["boxes", "masks", "manifest", "raw_images", "params:bbox"],
                outputs="bbox_previews",
                name="render_previews",
            ),
        ]
    )
