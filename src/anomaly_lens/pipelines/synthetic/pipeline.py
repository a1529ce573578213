"""The ``synthetic`` pipeline."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.synthetic.nodes import generate_raw_dataset


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                generate_raw_dataset,
                inputs="params:synthetic",
                outputs=["raw_images", "raw_annotations", "raw_objects", "raw_metadata"],
                name="generate_raw_dataset",
            )
        ]
    )
