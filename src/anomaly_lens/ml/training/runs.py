"""Nested MLflow runs. No Kedro."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import mlflow

logger = logging.getLogger(__name__)


def nested_run(name: str, params: Mapping[str, Any] | None = None, **tags: Any):
    """A nested MLflow run under the active one, with ``params`` and ``tags`` logged; a
    no-op context without an active run (the library used without tracking)."""
    if mlflow.active_run() is None:
        return contextlib.nullcontext()
    run = mlflow.start_run(run_name=name, nested=True)
    if params:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    if tags:
        mlflow.set_tags(tags)
    return run


def nested_metric(name: str, value: float) -> None:
    """A metric of the active run; nothing without one."""
    if mlflow.active_run() is not None:
        mlflow.log_metric(name, value)
