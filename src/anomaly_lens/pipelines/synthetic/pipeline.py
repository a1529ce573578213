"""The ``synthetic`` pipeline: writes the demo data to its own ``demo_*`` entries."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.synthetic.nodes import generate_raw_dataset


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                generate_raw_dataset,
                inputs="params:synthetic",
                outputs=["demo_images", "demo_annotations", "demo_objects", "demo_metadata"],
                name="generate_raw_dataset",
            )
        ]
    )
