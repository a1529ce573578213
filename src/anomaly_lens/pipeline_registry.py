"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline by folder name; ``__default__`` runs the whole chain.

    ``__default__`` starts with ``synthetic``, which writes the embedded raw data. On other
    data (``--env=mtd``, ``--env=voc``) name the pipelines after the raw layer explicitly.
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(pipelines.values(), start=Pipeline([]))
    return pipelines
