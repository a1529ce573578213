"""Resuming a run: its fingerprint, restored history and end checks. No Kedro."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from anomaly_lens.ml.training.settings import TrainerSettings, TrainSettings

logger = logging.getLogger(__name__)


def metrics_of(row: dict) -> dict[str, float]:
    return {k: v for k, v in row.items() if k != "epoch" and not pd.isna(v)}


def restored_history(path: Path, last_epoch: int) -> list[dict]:
    """The rows of ``path`` up to the checkpointed ``last_epoch`` (none if it is absent)."""
    if not path.exists():
        return []
    rows = pd.read_csv(path)
    return rows[rows["epoch"] <= last_epoch].to_dict("records")


def has_ended(checkpoint: dict, settings: TrainerSettings) -> bool:
    """Whether the run saved in ``checkpoint`` had ended under ``settings``: its last epoch
    was the last allowed, or early stopping had run out of patience (epochs without
    improvement; an improving epoch resets the count to 0, hence at least 1)."""
    stopping = [v for k, v in checkpoint["callbacks"].items() if k.startswith("EarlyStopping")]
    waited = stopping[0]["wait_count"] if stopping else 0
    out_of_patience = waited >= max(settings.patience, 1)
    return checkpoint["epoch"] + 1 >= settings.max_epochs or out_of_patience


# Where and how a run is placed and shown, and how its report is sampled: neither what it
# learns nor how it reads its test items.
PLACEMENT_AND_DISPLAY = {
    "resume": True,
    "bootstrap_rounds": True,
    "baseline_trees": True,
    "trainer": {
        "progress_bar",
        "num_workers",
        "checkpoint_dir",
        "devices",
        "num_nodes",
        "strategy",
    },
}
# What may differ between a run and its resume: the above, how it is stopped and how it is
# evaluated. Everything else (model, loss, optimiser, schedule length, augmentation, seed…)
# must match, or the resumed run is not the run it claims to continue.
RESUMABLE_CHANGES = {
    **PLACEMENT_AND_DISPLAY,
    "tta": True,
    "trainer": PLACEMENT_AND_DISPLAY["trainer"] | {"patience"},
}


def run_fingerprint(
    settings: TrainSettings, cache_fingerprint: str, parts: Mapping[str, Sequence[str]]
) -> str:
    """A digest of what a run learns from: its settings (bar ``RESUMABLE_CHANGES``), the
    image cache and the items of each part (``train``, ``val``)."""
    payload = {
        "settings": settings.model_dump(mode="json", exclude=RESUMABLE_CHANGES),
        "cache": cache_fingerprint,
        "parts": {part: list(items) for part, items in sorted(parts.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def check_same_run(recorded: Path, fingerprint: str | None, last: Path) -> None:
    """Refuse to resume ``last`` for a run with another ``fingerprint`` than its own."""
    if fingerprint is None:
        return
    if not recorded.exists():
        logger.warning("%s has no record of the run that wrote it; resuming as asked", last)
    elif recorded.read_text() != fingerprint:
        raise ValueError(
            f"{last} was written by a run with other training settings, data or "
            "train/val items (e.g. other cv folds): resume with the parameters it was started "
            "with, or run without train.resume (a fresh run replaces it)"
        )
