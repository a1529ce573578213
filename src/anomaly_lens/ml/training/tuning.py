"""Optuna studies over training settings: TPE sampling, median pruning through Lightning,
an RDB storage that several workers share and a killed worker's study resumes from.

Only the ``train`` and ``val`` parts are read: the objective is a validation metric. No Kedro.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import optuna
import pandas as pd
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna_integration import PyTorchLightningPruningCallback
from pydantic import Field, NonNegativeInt, PositiveInt
from sqlalchemy.exc import SQLAlchemyError

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.training.binary import merged
from anomaly_lens.ml.training.core import train_on_cache
from anomaly_lens.ml.training.runs import nested_run
from anomaly_lens.ml.training.settings import Settings, TrainSettings

logger = logging.getLogger(__name__)

TUNED_PARTS = ("train", "val")


class Dimension(Settings):
    """One searched training setting: ``float``/``int`` in [low, high] (optionally log),
    or one of ``choices``."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None


class PrunerSettings(Settings):
    n_startup_trials: NonNegativeInt = 3  # trials never pruned (the median needs some)
    n_warmup_steps: NonNegativeInt = 2  # epochs of every trial before it can be pruned


class StudySettings(Settings):
    """What ``run_study`` needs besides the data."""

    study_name: str
    storage: str
    n_trials: PositiveInt = 12
    direction: Literal["maximize", "minimize"] = "maximize"
    seed: int = 42
    heartbeat_seconds: PositiveInt = 60
    pruner: PrunerSettings = PrunerSettings()
    search_space: dict[str, Dimension] = Field(default_factory=dict)
    trial_overrides: dict[str, Any] = Field(default_factory=dict)


def nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"optimizer.lr": 0.01}`` -> ``{"optimizer": {"lr": 0.01}}``."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, last = key.split(".")
        target = out
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return out


def lookup(values: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted path of nested mappings."""
    for part in dotted.split("."):
        values = values[part]
    return values


def suggest(trial: optuna.Trial, space: Mapping[str, Dimension]) -> dict[str, Any]:
    """One value per dimension, drawn by the trial's sampler."""
    values = {}
    for name, dim in space.items():
        if dim.type == "categorical":
            values[name] = trial.suggest_categorical(name, dim.choices)
        elif dim.type == "int":
            values[name] = trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
        else:
            values[name] = trial.suggest_float(name, dim.low, dim.high, log=dim.log)
    return values


def storage(url: str, heartbeat_seconds: int) -> RDBStorage:
    """The study's RDB storage. A worker that dies leaves its trial RUNNING; without a
    heartbeat for ``2 * heartbeat_seconds`` it is failed and retried once by the next worker."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return RDBStorage(
        url,
        engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
        heartbeat_interval=heartbeat_seconds,
        grace_period=2 * heartbeat_seconds,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
    )


def open_study(settings: StudySettings, attempts: int = 5) -> tuple[optuna.Study, bool]:
    """The study, and whether this call created it (else it resumes it or joins other
    workers). The storage's unique study name decides which of several workers starting
    together creates it; the losers of a race to create the storage's tables try again."""
    options = {
        "study_name": settings.study_name,
        "sampler": optuna.samplers.TPESampler(seed=settings.seed),
        "pruner": optuna.pruners.MedianPruner(
            n_startup_trials=settings.pruner.n_startup_trials,
            n_warmup_steps=settings.pruner.n_warmup_steps,
        ),
    }
    for attempt in range(attempts):
        try:
            rdb = storage(settings.storage, settings.heartbeat_seconds)
            try:
                study = optuna.create_study(storage=rdb, direction=settings.direction, **options)
            except optuna.exceptions.DuplicatedStudyError:
                return optuna.load_study(storage=rdb, **options), False
            return study, True
        except SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def run_study(
    cache: ImageCache,
    ids_by_part: Mapping[str, Sequence[str]],
    base: Mapping[str, Any],
    settings: StudySettings,
) -> optuna.Study:
    """``settings.n_trials`` more trials of the study: each trains with ``base`` (a train
    parameter block) + ``trial_overrides`` + the sampled values and returns the best value of
    the monitored validation metric. A new study first tries the values ``base`` has.

    Only ``train`` and ``val`` ids are passed on: the test split is never read.
    """
    if set(ids_by_part) - set(TUNED_PARTS):
        raise ValueError(f"Tuning reads {TUNED_PARTS} only, not {sorted(ids_by_part)}")
    study, created = open_study(settings)
    if created:  # the default parameters are the first trial, queued by one worker only
        defaults = {name: _current(base, name) for name in settings.search_space}
        study.enqueue_trial({k: v for k, v in defaults.items() if v is not None})
    checkpoints = Path(TrainSettings.model_validate(dict(base)).trainer.checkpoint_dir)

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, settings.search_space)
        trainer = {"checkpoint_dir": str(checkpoints / "tune" / f"trial_{trial.number}")}
        train = TrainSettings.model_validate(
            merged(base, settings.trial_overrides, nested(values), {"trainer": trainer})
        )
        monitor = train.trainer.monitor
        with nested_run(f"trial {trial.number}", values, optuna_trial=trial.number):
            result = train_on_cache(
                cache,
                ids_by_part,
                train,
                [PyTorchLightningPruningCallback(trial, monitor=monitor)],
            )
        history = result.history[monitor]
        return float(history.max() if settings.direction == "maximize" else history.min())

    # A combination that cannot train (e.g. out of memory) fails its trial, not the study.
    study.optimize(
        objective, n_trials=settings.n_trials, gc_after_trial=True, catch=(RuntimeError,)
    )
    return study


def _current(base: Mapping[str, Any], name: str) -> Any:
    try:
        return lookup(TrainSettings.model_validate(dict(base)).model_dump(), name)
    except (KeyError, TypeError):
        return None


def summary(study: optuna.Study) -> dict[str, Any]:
    """``best_value``, ``best_params``, trial counts by state, and the first (default
    parameters') trial's value where it completed."""
    states = pd.Series([t.state.name for t in study.trials]).value_counts().to_dict()
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    first = study.trials[0] if study.trials else None
    return {
        "study_name": study.study_name,
        "direction": study.direction.name.lower(),
        "best_value": study.best_value if complete else None,
        "best_params": study.best_params if complete else {},
        "best_trial": study.best_trial.number if complete else None,
        "default_value": first.value if first is not None and first.value is not None else None,
        "n_trials": len(study.trials),
        "n_complete": len(complete),
        "n_pruned": states.get("PRUNED", 0),
        "n_failed": states.get("FAIL", 0),
    }
