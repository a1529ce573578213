"""Project hooks: parameters are checked before a run, reports go to the active MLflow
run, read-only entries know their names."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from kedro.framework.hooks import hook_impl
from matplotlib.figure import Figure

from anomaly_lens.datasets import ReadOnlyDataset
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.parameters import check_parameters
from anomaly_lens.tracking import register_headline_view

logger = logging.getLogger(__name__)


class ParameterCheckHook:
    """Checks every parameter block against its schema when the catalog is made, before a
    run starts (and before kedro-mlflow opens its run): a bad value or a misspelt key (also
    one given with ``--params``) stops the run at once, named."""

    @hook_impl
    def after_catalog_created(self, parameters: dict[str, Any]) -> None:
        check_parameters(parameters["parameters"])


class RunTagsHook:
    """Tags the MLflow run with the env, dataset, pipelines and backbone, and names it
    after them (``mtd · train · tf_efficientnet_lite0``), so runs can be told apart and
    filtered in the MLflow UI; stores the experiment's ``headline`` view (the run table
    with the headline metrics as columns). Runs after kedro-mlflow has opened the run."""

    def __init__(self) -> None:
        self._dataset = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._dataset = context.config_loader["globals"].get("dataset")

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        if mlflow.active_run() is None:
            return
        env = run_params.get("env") or "base"
        pipelines = "+".join(run_params.get("pipeline_names") or ["__default__"])
        backbone = catalog.load("parameters").get("train", {}).get("model", {}).get("backbone")
        tags = {"env": env, "dataset": self._dataset, "pipelines": pipelines}
        tags |= {"backbone": backbone} if backbone else {}
        mlflow.set_tags({k: v for k, v in tags.items() if v})
        name = " · ".join(str(v) for v in (env, pipelines, backbone) if v)
        mlflow.set_tag("mlflow.runName", name)
        register_headline_view(mlflow.MlflowClient(), mlflow.active_run().info.experiment_id)


class ReportLoggingHook:
    """Logs outputs whose catalog entry carries ``metadata: {mlflow_artifact: true}``.

    Local copies stay versioned by the catalog; MLflow gets one copy per run, so the
    reports of a run sit beside its parameters (kedro-mlflow's artifact dataset cannot wrap
    a versioned entry). Figures become PNG, model bundles (dicts with a ``state_dict``) a
    ``.pt`` file, other dicts JSON, data frames CSV.
    """

    def __init__(self) -> None:
        self._catalog = None

    @hook_impl
    def after_catalog_created(self, catalog) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node) -> None:
        if self._catalog is None or mlflow.active_run() is None:
            return
        dataset = self._catalog.get(dataset_name)
        metadata = getattr(dataset, "metadata", None) or {}
        if not metadata.get("mlflow_artifact"):
            return
        folder = metadata.get("mlflow_folder", "reports")
        if isinstance(data, Figure):
            mlflow.log_figure(data, f"{folder}/{dataset_name}.png")
        elif isinstance(data, ModelBundle):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{dataset_name}.pt"
                torch.save(data.to_saved(), path)
                mlflow.log_artifact(str(path), folder)
        elif isinstance(data, dict):
            mlflow.log_dict(data, f"{folder}/{dataset_name}.json")
        elif isinstance(data, pd.DataFrame):
            mlflow.log_text(data.to_csv(index=False), f"{folder}/{dataset_name}.csv")
        elif isinstance(data, str):  # an HTML report
            suffix = ".html" if data.lstrip().lower().startswith("<!doctype html") else ".txt"
            mlflow.log_text(data, f"{folder}/{dataset_name}{suffix}")
        else:
            logger.warning("Not logging %s to MLflow: %s", dataset_name, type(data).__name__)


class ReadOnlyEntriesHook:
    """Tells every read-only catalog entry its name, so a refused save names the entry."""

    @hook_impl
    def after_catalog_created(self, catalog) -> None:
        for name in catalog.keys():
            dataset = catalog.get(name)
            if isinstance(dataset, ReadOnlyDataset):
                dataset.entry_name = name
