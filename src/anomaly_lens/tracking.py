"""MLflow conventions of the project: headline figures as metrics of a run, and the
experiment's ``headline`` view of its run table."""

from __future__ import annotations

import json
from collections.abc import Mapping


def as_mlflow_metrics(figures: Mapping[str, float | None]) -> dict:
    """Figures as kedro-mlflow's ``MlflowMetricsHistoryDataset`` saves them (one step);
    a figure that could not be computed (None) is left out."""
    return {name: {"value": float(v), "step": 0} for name, v in figures.items() if v is not None}


# The MLflow UI opens a run table with these columns at
# ``#/experiments/<id>/runs?viewStateShareKey=headline`` (MLflow's shared view state, an
# experiment tag); columns of metrics an experiment does not have yet are left out.
HEADLINE_VIEW = "headline"
HEADLINE_METRICS = (
    "test_macro_f1",
    "test_macro_f1_ci95_low",
    "test_macro_f1_ci95_high",
    "test_macro_f1_frozen_logistic",
    "test_macro_f1_random_forest",
    "test_mean_iou",
    "calibration.ece_before",
    "calibration.ece_after",
    "ood.chosen_auroc_corruption_severity_3plus",
    "ood.chosen_auroc_far_ood",
    "xai.integrated_gradients.relevance_mass",
    "binary.assembled_macro_f1",
    "binary.macro_f1_difference",
    "cv.oof_macro_f1",
)
HEADLINE_TAGS = ("env", "dataset", "pipelines", "backbone")


def headline_view_state() -> dict:
    """The shared view: top-level runs, newest first, headline metrics and tags as columns."""
    columns = [f"metrics.`{m}`" for m in HEADLINE_METRICS] + [f"tags.`{t}`" for t in HEADLINE_TAGS]
    return {
        "selectedColumns": columns,
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "searchFilter": "tags.`mlflow.parentRunId` IS NULL",
    }


def register_headline_view(client, experiment_id: str) -> None:
    """Stores the headline view on the experiment (``client``: an ``MlflowClient``)."""
    client.set_experiment_tag(
        experiment_id, f"mlflow.sharedViewState.{HEADLINE_VIEW}", json.dumps(headline_view_state())
    )


def headline_url(base: str, experiment_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={HEADLINE_VIEW}"
