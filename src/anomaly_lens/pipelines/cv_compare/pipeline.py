"""The ``cv_compare`` pipeline: the latest (or a named) ``cv_predictions`` against a named
earlier one, e.g.
``kedro run --pipelines=cv_compare --load-versions=cv_reference_predictions:<version>``."""

from kedro.pipeline import Node, Pipeline

from anomaly_lens.pipelines.cv_compare.nodes import compare_cv_runs


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                compare_cv_runs,
                inputs=["cv_predictions", "cv_reference_predictions", "params:train", "params:cv"],
                outputs="cv_comparison",
                name="compare_cv_runs",
            )
        ]
    )
