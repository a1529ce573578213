"""Nodes of the ``cv`` pipeline: k-fold cross-validation over every sample, pooled
out-of-fold predictions, and a frozen-feature baseline on the same folds."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from anomaly_lens.ml.anomaly.gate import cross_validated_scores, gate_report
from anomaly_lens.ml.data.cache import (
    ImageCache,
    MultiViewDataset,
    cache_fingerprint,
    chosen_image_size,
)
from anomaly_lens.ml.data.splitting import assign_folds, units_of
from anomaly_lens.ml.evaluation import baseline
from anomaly_lens.ml.evaluation.crossval import (
    fit_and_predict_fold,
    fold_datasets,
    fold_parts,
    item_units,
    pooled_report,
    prediction_classes,
)
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.evaluation.nested import nested_logistic
from anomaly_lens.ml.evaluation.predictions import (
    per_photo_table,
    prediction_table,
)
from anomaly_lens.ml.training.datasets import build_datasets, label_task
from anomaly_lens.ml.training.resume import PLACEMENT_AND_DISPLAY, run_fingerprint
from anomaly_lens.ml.training.runs import nested_metric, nested_run
from anomaly_lens.ml.training.settings import TrainSettings
from anomaly_lens.parameters import AnomalyParams, CvParams, parse_block
from anomaly_lens.tracking import as_mlflow_metrics

logger = logging.getLogger(__name__)

EVALUATED = ("train", "val", "test")  # every sample of the split but the `shift` domain
# Fold checkpoints under `checkpoint_dir`, one folder per grouping, so that `leakage`'s
# random folds never replace the grouped folds' of `cv` (and the other way round).
CHECKPOINT_FOLDERS = {"unit": "cv", "none": "leaky_cv"}


def grouped_settings(cv: dict) -> dict:
    """``cv_settings``: the ``cv`` block as configured (the ``leakage`` pipeline's
    namespace makes its own, with random folds)."""
    return parse_block(CvParams, cv).model_dump()


def _items(cache: ImageCache, ids: list[str], train: TrainSettings) -> dict[str, MultiViewDataset]:
    """The items of these samples twice: augmented (``train``) and as they are (``plain``)."""
    _, targets, _ = label_task(cache.labels, cache.classes, train.label_type)
    views = train.views or list(cache.views)
    return build_datasets(
        cache,
        {"train": ids, "plain": ids},
        targets,
        views,
        train.per_view,
        train.augmentation,
        train.seed,
    )


def _evaluated(splits: pd.DataFrame) -> list[str]:
    return splits.loc[splits["split"].isin(EVALUATED), "sample_id"].tolist()


def assign_cv_folds(image_cache: dict, splits: pd.DataFrame, train: dict, cv: dict) -> pd.DataFrame:
    """``cv_folds``: one row per item (photo with ``per_view``, else sample) with its unit
    and fold. Units are the split's (tiles, specimens, joined look-alikes) unless
    ``cv.group_by`` is ``none``. Grouped folds are drawn over the photos whichever the
    model, so a fused and a per-view model of the same data are scored on the same folds."""
    train, cv = parse_block(TrainSettings, train), parse_block(CvParams, cv)
    cache = ImageCache.from_arrays(image_cache)
    ids, unit_of = _evaluated(splits), units_of(splits)
    plain = _items(cache, ids, train)["plain"]
    units = item_units(plain, unit_of, cv.group_by)
    drawn, drawn_units = plain, units
    if cv.group_by == "unit" and not train.per_view:
        drawn = _items(cache, ids, train.model_copy(update={"per_view": True}))["plain"]
        drawn_units = item_units(drawn, unit_of, cv.group_by)
    fold = assign_folds(
        pd.Series(drawn_units),
        drawn.targets[drawn.positions],
        cv.folds,
        cv.seed,
        cv.candidates,
    )
    if drawn is not plain:  # a sample's photos share its unit, hence one fold
        fold_of_sample = dict(zip(cache.sample_ids[drawn.positions], fold, strict=True))
        fold = np.array([fold_of_sample[s] for s in cache.sample_ids[plain.positions]])
    return pd.DataFrame(
        {
            "item_id": [plain.item_id(k) for k in range(len(plain))],
            "sample_id": cache.sample_ids[plain.positions],
            "unit_id": units,
            "fold": fold,
        }
    )


def _checked_items(
    cache: ImageCache, cv_folds, samples, manifest, class_names, views, train: TrainSettings
) -> dict[str, MultiViewDataset]:
    """The items of ``cv_folds`` (augmented and plain), refused where the cache or the folds
    were made from other inputs, or the model has no class decision to pool."""
    if train.model.task == "segmentation":
        raise ValueError(
            "cv pools each photo's class decision and a segmentation-only model has none: "
            "use train.model.task=multitask (masks and classes) or classification"
        )
    size = chosen_image_size(train.image_size, manifest, train.max_image_size)
    expected = cache_fingerprint(samples, manifest, views, class_names, size, train.resize)
    if cache.fingerprint != expected:
        raise ValueError("The image cache was built from other inputs: run `cv` from its start")
    data = _items(cache, list(pd.unique(cv_folds["sample_id"])), train)
    if [data["plain"].item_id(k) for k in range(len(data["plain"]))] != list(cv_folds["item_id"]):
        raise ValueError("cv_folds lists other items than the image cache: run `cv` again")
    return data


def cross_validate(
    image_cache: dict,
    samples: pd.DataFrame,
    manifest: pd.DataFrame,
    cv_folds: pd.DataFrame,
    class_names: list[str],
    views: list[str],
    train: dict,
    cv: dict,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One model per fold through the training core (``train.*`` acts as in ``train``),
    fitted on the other folds but the next one, which early stopping watches
    (``cv.validation: next_fold``), or on every other fold for ``max_epochs`` (``none``);
    the test fold never feeds fitting or selection. Returns ``cv_predictions`` (every
    photo's out-of-fold prediction; a fused model's photos carry their sample's, and pixel
    counts where it has masks) and ``cv_history``. Fold ``k`` keeps its checkpoints in
    ``checkpoint_dir/<CHECKPOINT_FOLDERS[group_by]>/fold_k``: with ``train.resume`` an
    interrupted run goes on there (ended folds are only predicted again)."""
    train, cv = parse_block(TrainSettings, train), parse_block(CvParams, cv)
    cache = ImageCache.from_arrays(image_cache)
    data = _checked_items(cache, cv_folds, samples, manifest, class_names, views, train)
    label_type, _, _ = label_task(cache.labels, cache.classes, train.label_type)
    fold_of_item, item_ids = cv_folds["fold"].to_numpy(), cv_folds["item_id"].to_numpy()
    tables, histories = [], []
    for fold in tqdm(range(int(fold_of_item.max()) + 1), desc="Cross-validation", disable=None):
        parts = fold_parts(fold_of_item, fold, cv.validation)
        datasets = fold_datasets(data, parts)
        folder = Path(train.trainer.checkpoint_dir) / CHECKPOINT_FOLDERS[cv.group_by]
        trainer = train.trainer.model_copy(update={"checkpoint_dir": str(folder / f"fold_{fold}")})
        items = {part: item_ids[parts[part]].tolist() for part in ("train", "val")}
        fingerprint, started = run_fingerprint(train, cache.fingerprint, items), time.monotonic()
        with nested_run(f"fold {fold}", {"fold": fold, "n_train": len(datasets["train"])}):
            table, result = fit_and_predict_fold(
                train, datasets, label_type, fingerprint, trainer, train.seed + fold
            )
            nested_metric("best_epoch", result.best_epoch)
        sizes = [len(parts[p]) for p in ("train", "val", "test")]
        logger.info("Fold %d: %s train/val/test items, best epoch %d, %.0f s", fold, sizes,
                    result.best_epoch, time.monotonic() - started)  # fmt: skip
        table.insert(1, "fold", fold)
        table.insert(2, "unit_id", cv_folds["unit_id"].to_numpy()[parts["test"]])
        tables.append(per_photo_table(table, datasets["test"]))
        histories.append(result.history.assign(fold=fold))
    return pd.concat(tables, ignore_index=True), pd.concat(histories, ignore_index=True)


def cross_validate_baseline(
    image_cache: dict, cv_folds: pd.DataFrame, train: dict, cv: dict
) -> pd.DataFrame:
    """Out-of-fold predictions of a logistic regression on frozen ImageNet features
    (``cv.baseline_backbone``), fitted on the other folds, on the same folds as the network;
    one row per photo, like ``cv_predictions``."""
    train, cv = parse_block(TrainSettings, train), parse_block(CvParams, cv)
    cache = ImageCache.from_arrays(image_cache)
    label_type, _, classes = label_task(cache.labels, cache.classes, train.label_type)
    plain = _items(cache, list(pd.unique(cv_folds["sample_id"])), train)["plain"]
    features = baseline.item_features(plain, cv.baseline_backbone)
    targets = plain.targets[plain.positions]
    fold_of_item = cv_folds["fold"].to_numpy()
    tables = []
    for fold in range(int(fold_of_item.max()) + 1):
        test = fold_of_item == fold
        model = baseline.fit_logistic(features[~test], targets[~test], label_type, cv.seed)
        probs = baseline.logistic_probabilities(model, features[test], label_type, len(classes))
        tested = plain.subset(np.flatnonzero(test))
        table = prediction_table(
            "test", tested, torch.from_numpy(probs), torch.from_numpy(targets[test]), classes
        )
        table.insert(1, "fold", fold)
        table.insert(2, "unit_id", cv_folds.loc[test, "unit_id"].to_numpy())
        tables.append(per_photo_table(table.drop(columns="split"), tested))
    return pd.concat(tables, ignore_index=True)


def summarise_cv(
    predictions: pd.DataFrame,
    baseline_predictions: pd.DataFrame,
    cv_folds: pd.DataFrame,
    train: dict,
    cv: dict,
) -> tuple[dict, dict]:
    """``cv_metrics`` (pooled out-of-fold report of the network and the baseline) and
    the headline figures as metrics of the MLflow run."""
    train, cv = parse_block(TrainSettings, train), parse_block(CvParams, cv)
    classes, label_type = prediction_classes(predictions)
    report = {
        "folds": int(cv_folds["fold"].nunique()),
        "group_by": cv.group_by,
        "validation": cv.validation,
        "items": int(len(cv_folds)),
        "units": int(cv_folds["unit_id"].nunique()),
        "classes": classes,
        "model": train.model.model_dump(include={"backbone", "pretrained", "task"}),
        "image_size": train.image_size,
        "per_view": train.per_view,
        "train": train.model_dump(mode="json", exclude=PLACEMENT_AND_DISPLAY),
        **pooled_report(predictions, classes, label_type, train.bootstrap_rounds, train.seed),
        "baseline": {
            "model": f"logistic regression on frozen {cv.baseline_backbone} features",
            **pooled_report(
                baseline_predictions, classes, label_type, train.bootstrap_rounds, train.seed
            ),
        },
    }
    report = json_safe(report)
    headline = {
        "oof_macro_f1": report["oof"]["macro_f1"],
        "oof_tile_macro_f1": report["oof_tile"]["macro_f1"],
        "baseline_oof_macro_f1": report["baseline"]["oof"]["macro_f1"],
    }
    if "segmentation" in report["oof"]:
        headline["oof_defect_iou"] = report["oof"]["segmentation"]["defect_iou"]
    return report, as_mlflow_metrics(headline)


def cross_validate_anomaly_scores(
    image_cache: dict, cv_folds: pd.DataFrame, anomaly: dict, train: dict
) -> pd.DataFrame:
    """``cv_anomaly_scores``: every photo's out-of-fold score of the ``anomaly`` detector,
    fitted per fold on the normal photos of the folds other than it and the next, its
    threshold set on the next (``ml.anomaly.gate``): on the network's folds."""
    return cross_validated_scores(
        ImageCache.from_arrays(image_cache),
        cv_folds,
        parse_block(AnomalyParams, anomaly),
        parse_block(TrainSettings, train).resize,
    )


def summarise_gate(
    scores: pd.DataFrame,
    predictions: pd.DataFrame,
    baseline_predictions: pd.DataFrame,
    train: dict,
    cv: dict,
) -> tuple[pd.DataFrame, dict, dict]:
    """``cv_gate_predictions`` (the network gated by the detector), ``cv_gate_metrics``
    (the detector alone out of fold; the gated network and the gated baseline, each with
    its paired difference to itself ungated) and their MLflow headline."""
    rounds, seed = (
        parse_block(TrainSettings, train).bootstrap_rounds,
        parse_block(CvParams, cv).seed,
    )
    gated, report = gate_report(
        scores, {"network": predictions, "baseline": baseline_predictions}, rounds, seed
    )
    report = json_safe(report)
    network = report["network"]
    headline = {
        "one_class_oof_auroc": report["one_class"]["per_photo"].get("auroc"),
        "gate_oof_macro_f1": network["oof"]["macro_f1"],
        "gate_minus_network": network["against_classifier_alone"]["difference"],
        "gate_baseline_oof_macro_f1": report["baseline"]["oof"]["macro_f1"],
    }
    logger.info("Gate out of fold: %s", headline)
    return (
        gated["network"],
        report,
        as_mlflow_metrics({k: v for k, v in headline.items() if v is not None}),
    )


def nested_baseline(
    image_cache: dict, cv_folds: pd.DataFrame, train: dict, cv: dict
) -> tuple[dict, dict]:
    """``cv_nested_metrics``: the frozen-feature logistic regression with its backbone and
    regularisation (``cv.nested``) chosen on inner folds, scored on outer folds the choice
    never saw, beside the best setting's plain out-of-fold figure (a selected score)."""
    train, cv = parse_block(TrainSettings, train), parse_block(CvParams, cv)
    cache = ImageCache.from_arrays(image_cache)
    label_type, _, classes = label_task(cache.labels, cache.classes, train.label_type)
    plain = _items(cache, list(pd.unique(cv_folds["sample_id"])), train)["plain"]
    features = {name: baseline.item_features(plain, name) for name in cv.nested.backbones}
    targets = plain.targets[plain.positions]
    probs, report = nested_logistic(
        features, targets, cv_folds["fold"].to_numpy(), classes, label_type, cv.nested.c, cv.seed
    )
    table = prediction_table(
        "test", plain, torch.from_numpy(probs), torch.from_numpy(targets), classes
    )
    table = table.drop(columns="split").assign(
        fold=cv_folds["fold"].to_numpy(), unit_id=cv_folds["unit_id"].to_numpy()
    )
    nested = pooled_report(
        per_photo_table(table, plain), classes, label_type, train.bootstrap_rounds, train.seed
    )
    report = json_safe({"nested": nested, **report})
    headline = {
        "nested_baseline_oof_macro_f1": report["nested"]["oof"]["macro_f1"],
        "selected_baseline_oof_macro_f1": report["selected"]["oof_macro_f1"],
    }
    logger.info("Frozen-feature logistic regression out of fold: %s", headline)
    return report, as_mlflow_metrics(headline)
