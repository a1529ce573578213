"""Nodes of the ``tune`` pipeline. The study reads the train and val splits only."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import optuna
import pandas as pd
from matplotlib.figure import Figure

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.data.splitting import ids_by_split
from anomaly_lens.ml.training.binary import binary_cache, binary_splits
from anomaly_lens.ml.training.tuning import TUNED_PARTS, nested, run_study, summary
from anomaly_lens.parameters import BinaryParams, TuneParams, binary_train_settings, parse_block
from anomaly_lens.tracking import as_mlflow_metrics

logger = logging.getLogger(__name__)


def tune_hyperparameters(
    image_cache: dict, splits: pd.DataFrame, params: dict, train: dict, binary: dict
) -> optuna.Study:
    """``tune.n_trials`` more trials of the study named by ``tune.study_name`` (default:
    ``<target>``) in ``tune.storage``, for the main model (``tune.target: main``) or one
    binary type (``binary.<type>``: its task and merged parameters)."""
    settings = parse_block(TuneParams, params)
    cache = ImageCache.from_arrays(image_cache)
    base = dict(train)
    if settings.target.startswith("binary."):
        name = settings.target.removeprefix("binary.")
        binary_settings = parse_block(BinaryParams, binary)
        splits = binary_splits(splits, cache, name, binary_settings.other_anomalies)
        cache = binary_cache(cache, name)
        base = binary_train_settings(train, binary_settings, name).model_dump()
    ids = ids_by_split(splits, TUNED_PARTS)  # the test split is not passed on
    study = run_study(cache, ids, base, settings.study())
    logger.info(
        "Study %s: %d trials, best %s", study.study_name, len(study.trials), study.best_value
    )
    return study


def _best_parameters(settings, best: dict) -> dict:
    """The best values as a parameters file: drop it into conf/local."""
    values = nested(best)
    if settings.target.startswith("binary."):
        return {"binary": {"per_type": {settings.target.removeprefix("binary."): values}}}
    return {"train": values}


def _history(study: optuna.Study, importances: dict[str, float]) -> Figure:
    """Each trial's value (pruned trials at their last report) and the best so far."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    rows = [
        (
            t.number,
            t.value
            if t.value is not None
            else (max(t.intermediate_values.values()) if t.intermediate_values else None),
            t.state.name,
        )
        for t in study.trials
    ]
    frame = pd.DataFrame(rows, columns=["trial", "value", "state"]).dropna()
    for state, part in frame.groupby("state"):
        left.scatter(part["trial"], part["value"], label=state.lower(), s=18)
    complete = frame[frame["state"] == "COMPLETE"]
    best = (
        complete["value"].cummax()
        if study.direction.name == "MAXIMIZE"
        else complete["value"].cummin()
    )
    left.step(complete["trial"], best, where="post", color="black", label="best so far")
    left.set(xlabel="trial", ylabel="validation metric", title="optimisation history")
    left.legend(fontsize="small")
    if importances:
        right.barh(list(importances), list(importances.values()))
        right.set(title="parameter importance (fANOVA)")
    else:
        right.axis("off")
        right.text(0.5, 0.5, "importances need 2+ complete trials", ha="center")
    fig.tight_layout()
    return fig


def report_study(study: optuna.Study, params: dict):
    """``tune_summary`` (best value and parameters, trial counts, importances), every trial
    as a table, the best parameters as YAML, the history plot and MLflow metrics."""
    settings = parse_block(TuneParams, params)
    report = summary(study)
    completed = report["n_complete"]
    report["importances"] = (
        optuna.importance.get_param_importances(study)
        if completed >= 2 and report["best_params"]
        else {}
    )
    report["storage"] = settings.storage
    report["target"] = settings.target
    trials = study.trials_dataframe()
    best = _best_parameters(settings, report["best_params"])
    metrics = as_mlflow_metrics(
        {name: report[name] for name in ("best_value", "default_value", "n_trials", "n_pruned")}
    )
    return report, trials, best, _history(study, report["importances"]), metrics
