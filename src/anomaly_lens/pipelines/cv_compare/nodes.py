"""Nodes of the ``cv_compare`` pipeline."""

from __future__ import annotations

import logging

import pandas as pd

from anomaly_lens.ml.evaluation.crossval import paired_difference
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.training.settings import TrainSettings
from anomaly_lens.parameters import CvParams, parse_block

logger = logging.getLogger(__name__)


def compare_cv_runs(
    cv_predictions: pd.DataFrame, cv_reference_predictions: pd.DataFrame, train: dict, cv: dict
) -> dict:
    """``cv_comparison``: out-of-fold macro-F1 per photo of two ``cv`` runs on the same
    folds and their difference (``candidate``: ``cv_predictions``, ``reference``:
    ``cv_reference_predictions``), with a paired unit-bootstrap interval of
    ``train.bootstrap_rounds`` rounds seeded by ``cv.seed``."""
    rounds = parse_block(TrainSettings, train).bootstrap_rounds
    seed = parse_block(CvParams, cv).seed
    if cv_predictions.equals(cv_reference_predictions):  # most often: no version named
        raise ValueError(
            "cv_predictions and cv_reference_predictions hold the same predictions, as the "
            "same version: name the reference run, "
            "`--load-versions=cv_reference_predictions:<version>` (the folders under the "
            "cv_predictions file's path are the versions); two runs that predicted every "
            "photo alike (a resumed run) have nothing to compare"
        )
    report = paired_difference(cv_predictions, cv_reference_predictions, rounds, seed)
    low, high = report["difference_ci95"]
    logger.info(
        "Out-of-fold macro-F1 %.3f against %.3f: %+.3f [%+.3f, %+.3f] (%d rounds, %.0f %% at "
        "or below zero)",
        report["candidate"]["macro_f1"],
        report["reference"]["macro_f1"],
        report["difference"],
        low,
        high,
        rounds,
        100 * report["share_of_rounds_at_or_below_zero"],
    )
    return json_safe(report)
