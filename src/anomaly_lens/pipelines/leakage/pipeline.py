"""The ``leakage`` pipeline: cross-validation with random folds (the ``cv`` pipeline in the
namespace ``leaky``: ``leaky.cv_metrics`` …) beside the grouped ``cv``.

``kedro run --pipelines=cv,leakage`` runs both; ``--pipelines=leakage`` alone compares
with the latest saved ``cv_metrics`` (and refuses one made with other parameters).
"""

from kedro.pipeline import Node, Pipeline, pipeline

from anomaly_lens.pipelines import train
from anomaly_lens.pipelines.cv.pipeline import SHARED_INPUTS, cross_validation
from anomaly_lens.pipelines.leakage.nodes import random_grouping, report_leakage

NAMESPACE = "leaky"


def create_pipeline(**kwargs) -> Pipeline:
    leaky = pipeline(
        Pipeline([Node(random_grouping, "params:cv", "cv_settings", name="random_grouping")])
        + cross_validation(),
        namespace=NAMESPACE,
        inputs=SHARED_INPUTS,
        parameters={"params:cv", "params:train", "params:pairing.views"},
    )
    report = Node(
        report_leakage,
        inputs=["cv_metrics", f"{NAMESPACE}.cv_metrics"],
        outputs="leakage_report",
        name="report_leakage",
    )
    return train.create_pipeline().only_nodes("cache_images") + leaky + Pipeline([report])
