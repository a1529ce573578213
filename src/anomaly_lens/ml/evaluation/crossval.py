"""Cross-validation over every item: folds, per-fold parts and the pooled out-of-fold report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning as L
import numpy as np
import pandas as pd
import torch

from anomaly_lens.ml.data.cache import MultiViewDataset
from anomaly_lens.ml.evaluation.metrics import (
    bootstrap_draws,
    classification_metrics,
    percentile_interval,
    segmentation_stats,
)
from anomaly_lens.ml.evaluation.predictions import (
    per_sample_table,
    pixel_count_table,
    pixel_counts,
    predict,
    prediction_table,
    probability_columns,
    score,
    segmentation_report,
)
from anomaly_lens.ml.training.core import ModelTask, fit_model, training_loaders
from anomaly_lens.ml.training.datasets import task_classes
from anomaly_lens.ml.training.fit import FitResult
from anomaly_lens.ml.training.settings import TrainerSettings, TrainSettings

GROUPINGS = ("unit", "none")
VALIDATIONS = ("next_fold", "none")


def item_units(
    dataset: MultiViewDataset, unit_of_sample: Mapping[str, str], group_by: str
) -> np.ndarray:
    """The unit each item is kept with: its sample's split unit (``unit``: specimen, tile,
    joined with look-alikes), or the item itself (``none``: a random, leaky split whose
    photos of one tile can fall on both sides; only for measuring leakage)."""
    if group_by not in GROUPINGS:
        raise ValueError(f"cv group_by must be one of {GROUPINGS}, not {group_by!r}")
    if group_by == "none":
        return np.array([dataset.item_id(k) for k in range(len(dataset))], dtype=object)
    samples = dataset.cache.sample_ids[dataset.positions]
    return np.array([unit_of_sample[str(s)] for s in samples], dtype=object)


def fold_parts(fold_of_item: np.ndarray, fold: int, validation: str) -> dict[str, np.ndarray]:
    """Item indices of one round: ``test`` is the fold, ``train`` the rest but ``val``:
    the next fold (``next_fold``: early stopping and the checkpoint watch it) or nothing
    (``none``: the model trains on every other fold for a fixed number of epochs). The test
    fold never takes part in fitting or selection."""
    if validation not in VALIDATIONS:
        raise ValueError(f"cv validation must be one of {VALIDATIONS}, not {validation!r}")
    folds = int(fold_of_item.max()) + 1
    val = (fold + 1) % folds if validation == "next_fold" else -1
    index = np.arange(len(fold_of_item))
    return {
        "train": index[(fold_of_item != fold) & (fold_of_item != val)],
        "val": index[fold_of_item == val],
        "test": index[fold_of_item == fold],
    }


def _scored(frame: pd.DataFrame, classes, label_type: str, rounds: int, seed: int) -> dict:
    """The metrics of a prediction table's rows, the bootstrap resampling its units."""
    probs, targets = (
        torch.from_numpy(frame[probability_columns(kind, classes)].to_numpy(np.float32))
        for kind in ("prob", "target")
    )
    groups = frame["unit_id"].to_numpy()
    return {
        "n_items": len(frame),
        **score(probs, targets, None, None, classes, label_type, rounds, seed, groups),
    }


def _per_fold(predictions: pd.DataFrame, classes, label_type: str) -> list[dict]:
    """Each fold's own macro-F1 per photo."""
    found = []
    for fold, part in predictions.groupby("fold"):
        probs, targets = (
            torch.from_numpy(part[probability_columns(kind, classes)].to_numpy(np.float32))
            for kind in ("prob", "target")
        )
        f1 = classification_metrics(probs, targets, classes, label_type)["macro_f1"]
        found.append({"fold": int(fold), "n_items": len(part), "macro_f1": f1})
    return found


def pooled_report(
    predictions: pd.DataFrame,
    classes: Sequence[str],
    label_type: str,
    rounds: int,
    seed: int,
) -> dict:
    """Metrics of the pooled out-of-fold predictions (one row per photo) with unit-level
    bootstrap intervals: ``oof`` per photo and ``oof_tile`` per sample (tile, specimen)
    from the mean of its photos' probabilities; plus each fold's own macro-F1 per photo.
    Where the rows carry pixel counts (a model with masks), ``oof`` has its
    ``segmentation`` too, pooled over every photo's pixels."""
    report = {"oof": _scored(predictions, classes, label_type, rounds, seed)}
    stats = pixel_counts(predictions, classes)
    if stats is not None:
        report["oof"]["segmentation"] = segmentation_report(
            stats, classes, rounds, seed, predictions["unit_id"].to_numpy()
        )
    samples = per_sample_table(predictions, classes, sort=True, first=["unit_id"])
    report["oof_tile"] = _scored(samples, classes, label_type, rounds, seed)
    report["per_fold"] = _per_fold(predictions, classes, label_type)
    return report


def prediction_classes(predictions: pd.DataFrame) -> tuple[list[str], str]:
    """The classes of a prediction table (its ``prob_<class>`` columns) and its label type:
    ``multiclass`` when the first class is ``normal`` and every row has one target."""
    classes = [c.removeprefix("prob_") for c in predictions.columns if c.startswith("prob_")]
    one_hot = (predictions[probability_columns("target", classes)].sum(axis=1) == 1).all()
    return classes, "multiclass" if classes[0] == "normal" and one_hot else "multilabel"


def _run_summary(metrics: dict, classes: Sequence[str], label_type: str) -> dict:
    summary = {
        "macro_f1": metrics["macro_f1"],
        "per_class_f1": {c: metrics["per_class"][c]["f1"] for c in classes},
    }
    if label_type == "multiclass":  # rows: true class, columns: predicted; normal first
        confusion = np.asarray(metrics["confusion"])
        summary["defect_free_called_defect"] = int(confusion[0, 1:].sum())
        summary["defects_called_normal"] = int(confusion[1:, 0].sum())
    return summary


def paired_difference(
    candidate: pd.DataFrame,
    reference: pd.DataFrame,
    rounds: int,
    seed: int,
    level: float = 0.95,
) -> dict:
    """Out-of-fold macro-F1 per photo of two ``cv_predictions`` tables of the same items
    and folds, and their difference (candidate minus reference) with a paired unit
    bootstrap interval: each round draws units (tiles, specimens) with replacement and
    scores both tables on the same photos, so the noise the two runs share (which tiles
    happen to be in the data) cancels. Rounds use the macro-F1 over the classes present in
    the round, as ``pooled_report``'s intervals do. Raises ``ValueError`` when the tables
    hold other classes, items, folds, units or targets."""
    classes, label_type = prediction_classes(reference)
    if prediction_classes(candidate) != (classes, label_type):
        raise ValueError("The two cv_predictions have other classes")
    if sorted(candidate["item_id"]) != sorted(reference["item_id"]):
        raise ValueError("The two cv_predictions hold other photos: compare runs on the same data")
    candidate = candidate.set_index("item_id").loc[reference["item_id"]]
    targets = probability_columns("target", classes)
    for columns, what in ((["fold", "unit_id"], "folds"), (targets, "targets")):
        if not (candidate[columns].to_numpy() == reference[columns].to_numpy()).all():
            raise ValueError(
                f"The two cv_predictions have other {what}: a paired comparison needs the "
                "same folds (`cv.folds`, `cv.seed`, `cv.group_by`) on the same data"
            )
    probs = probability_columns("prob", classes)
    tensors = {
        name: torch.tensor(table[probs].to_numpy(np.float32))
        for name, table in (("candidate", candidate), ("reference", reference))
    }
    truth = torch.tensor(reference[targets].to_numpy(np.float32))

    def metrics(name: str, rows: np.ndarray | slice = slice(None)) -> dict:
        return classification_metrics(tensors[name][rows], truth[rows], classes, label_type)

    differences = np.array(
        [
            metrics("candidate", rows)["macro_f1_present"]
            - metrics("reference", rows)["macro_f1_present"]
            for rows in bootstrap_draws(
                len(reference), rounds, seed, reference["unit_id"].to_numpy()
            )
        ]
    )
    differences = differences[np.isfinite(differences)]
    runs = {name: _run_summary(metrics(name), classes, label_type) for name in tensors}
    return {
        "items": len(reference),
        "units": int(reference["unit_id"].nunique()),
        "folds": int(reference["fold"].nunique()),
        "classes": classes,
        **runs,
        "difference": runs["candidate"]["macro_f1"] - runs["reference"]["macro_f1"],
        "difference_ci95": percentile_interval(differences, level),
        "share_of_rounds_at_or_below_zero": float(np.mean(differences <= 0)),
        "rounds": rounds,
    }


def fold_datasets(
    data: Mapping[str, MultiViewDataset], parts: Mapping[str, np.ndarray]
) -> dict[str, MultiViewDataset]:
    """One fold's datasets: ``train`` from the augmented items, ``val`` (where the fold has
    one) and ``test`` from the items as they are."""
    datasets = {"train": data["train"].subset(parts["train"])}
    if len(parts["val"]):  # none with `cv.validation: none`
        datasets["val"] = data["plain"].subset(parts["val"])
    return datasets | {"test": data["plain"].subset(parts["test"])}


def fit_and_predict_fold(
    settings: TrainSettings,
    datasets: Mapping[str, MultiViewDataset],
    label_type: str,
    fingerprint: str,
    trainer: TrainerSettings,
    seed: int,
) -> tuple[pd.DataFrame, FitResult]:
    """One fold's model through the training core (``fit_model``: every ``train.*`` setting
    acts as in ``train``) and its test part's prediction table, with pixel counts for a
    model with masks."""
    loaders = training_loaders(datasets, settings)
    L.seed_everything(seed, workers=True)
    train = datasets["train"]
    classes = task_classes(train.cache.classes, label_type)
    views = settings.views or list(train.cache.views)
    task = ModelTask.of(train, classes, views, settings.per_view, label_type)
    module, result = fit_model(settings, task, loaders, fingerprint, trainer)
    module.model.load_state_dict(result.state_dict)
    found = predict(module.model.eval(), loaders["test"], settings.tta)
    table = prediction_table("test", datasets["test"], found.probs, found.targets, classes)
    if found.seg_probs is not None:
        stats = segmentation_stats(found.seg_probs, found.masks)
        table = table.join(pixel_count_table(stats, classes))
    return table.drop(columns="split"), result
