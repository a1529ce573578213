"""The ``pairing`` pipeline."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.pairing.nodes import key_samples, pair_samples, summarise_pairing


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                key_samples,
                inputs=["manifest", "params:pairing"],
                outputs="keyed_manifest",
                name="key_samples",
            ),
            Node(
                pair_samples,
                inputs=["keyed_manifest", "class_names", "params:pairing"],
                outputs=["samples", "pairing_conflicts"],
                name="pair_samples",
            ),
            Node(
                summarise_pairing,
                inputs=["samples", "pairing_conflicts", "params:pairing"],
                outputs="pairing_report",
                name="summarise_pairing",
            ),
        ]
    )
