"""Nodes of the ``ood`` pipeline. Detectors are fitted on train items, thresholds set on
val items; test items are the in-distribution side of every evaluation."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.data.splitting import ids_by_split
from anomaly_lens.ml.evaluation.baseline import pretrained_features
from anomaly_lens.ml.evaluation.drift import (
    DriftReference,
    class_distances,
    distances,
    fit_reference,
)
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.evaluation.ood import DETECTORS, OODScorer, logits_and_features
from anomaly_lens.ml.evaluation.ood_sets import (
    HEADLINE_SEVERITY,
    IN_DISTRIBUTION,
    choose_detector,
    class_groups,
    detector_summary,
    items_by_part,
    measured_sets,
    score_sets,
    separation_table,
)
from anomaly_lens.ml.models.bundle import ModelBundle, load_model
from anomaly_lens.ml.serving.identity import model_identity
from anomaly_lens.parameters import OODParams, parse_block
from anomaly_lens.tracking import as_mlflow_metrics

logger = logging.getLogger(__name__)


def fit_ood_detectors(
    model: ModelBundle, image_cache: dict, splits: pd.DataFrame, params: dict
) -> dict[str, OODScorer]:
    """Every detector fitted on the train items (all of them) with its threshold at
    ``ood.kept`` of the val items; test items are not read."""
    settings = parse_block(OODParams, params)
    cache = ImageCache.from_arrays(image_cache)
    parts = items_by_part(model, cache, splits, ["train", "val"], settings.seed)
    network = load_model(model)
    train_logits, train_features = logits_and_features(network, parts["train"].batches())
    val_logits, val_features = logits_and_features(network, parts["val"].batches())
    groups = class_groups(parts["train"].labels, model.label_type)
    detectors, identity = {}, model_identity(model)
    pixels = {part: items.pixels() for part, items in parts.items()}
    for name in DETECTORS:
        scorer = OODScorer(name, model.label_type, settings.seed, settings.neighbours, identity)
        scorer.fit(train_logits, train_features, groups, pixels["train"])
        scorer.set_threshold(scorer.score(val_logits, val_features, pixels["val"]), settings.kept)
        detectors[name] = scorer
    logger.info(
        "OOD detectors fitted on %d train items, thresholds on %d val items",
        len(train_features),
        len(val_features),
    )
    return detectors


FALLBACK_DETECTOR = "knn"  # ``auto`` without validation items


def choose_ood_detector(
    detectors: dict[str, OODScorer],
    model: ModelBundle,
    image_cache: dict,
    splits: pd.DataFrame,
    params: dict,
) -> dict:
    """Which detector inference applies: ``ood.detector``, or with ``auto`` the best mean
    AUROC on corruptions (severity >= 3) and far-OOD textures made from the **val** items
    and another seed than the test sets; test items are not read."""
    settings = parse_block(OODParams, params)
    if settings.detector != "auto":
        return {"chosen": settings.detector, "rule": "ood.detector"}
    cache = ImageCache.from_arrays(image_cache)
    parts = items_by_part(model, cache, splits, ["val"], settings.seed, settings.max_items)
    if "val" not in parts:
        return {"chosen": FALLBACK_DETECTOR, "rule": "auto without val items: the fallback"}
    sets = measured_sets(
        parts["val"], None, settings.seed + 1000, inside="val", min_severity=HEADLINE_SEVERITY
    )
    table = separation_table(score_sets(load_model(model), detectors, sets), detectors, "val")
    chosen, per_detector = choose_detector(table)
    logger.info("OOD detector chosen on validation-side sets: %s", chosen)
    return {
        "chosen": chosen,
        "rule": "auto: best mean AUROC on val corruptions (severity >= 3) and far-OOD",
        "validation": per_detector,
    }


def fit_drift_reference(
    model: ModelBundle, image_cache: dict, splits: pd.DataFrame, params: dict
) -> DriftReference:
    """What the model's train and val images look like to a frozen encoder, for
    ``inference`` to measure new images against (``ood.drift``); test is not read."""
    settings = parse_block(OODParams, params)
    cache = ImageCache.from_arrays(image_cache)
    images = {
        part: _photos(model, cache, ids)[0]
        for part, ids in ids_by_split(splits, ["train", "val"]).items()
    }
    drift = settings.drift
    return fit_reference(
        model_identity(model),
        images["train"],
        images["val"],
        drift.backbone,
        drift.max_images,
        settings.seed,
        quantile=drift.quantile,
        resamples=drift.resamples,
    )


def _photos(model: ModelBundle, cache: ImageCache, ids: list[str]) -> tuple[np.ndarray, list]:
    """The present photos of the model's views of samples ``ids`` and each one's classes
    (``normal`` without a label)."""
    views, positions = [cache.views.index(v) for v in model.views], cache.positions(ids)
    present = cache.view_mask[positions][:, views]
    sample_of, _ = np.nonzero(present)
    labels = cache.labels[positions][sample_of]
    classes = [
        {c for c, on in zip(cache.classes, row, strict=True) if on} or {"normal"} for row in labels
    ]
    return cache.images[positions][:, views][present], classes


def measure_split_distances(
    drift_reference: DriftReference,
    model: ModelBundle,
    image_cache: dict,
    splits: pd.DataFrame,
    params: dict,
) -> dict:
    """``split_distances``: KID and FID of val and test against train on the drift
    reference's encoder, overall (with the drift flag of ``inference``'s rule: a split
    drawn like the others stays below it) and per class; a seeded draw of at most
    ``ood.drift.max_images`` photos per split. Nothing here is fitted or chosen."""
    settings = parse_block(OODParams, params)
    cache, rng = ImageCache.from_arrays(image_cache), np.random.default_rng(settings.seed)
    found = {}
    for part, ids in ids_by_split(splits, ["train", "val", "test"]).items():
        images, classes = _photos(model, cache, ids)
        kept = np.sort(rng.permutation(len(images))[: settings.drift.max_images])
        found[part] = (
            pretrained_features(images[kept], drift_reference.backbone),
            [classes[k] for k in kept],
        )
    report = {
        "backbone": drift_reference.backbone,
        "rule": "KID carries the flag; FID is biased upwards on small sets",
    }
    for part in ("val", "test"):
        if part in found and "train" in found:
            overall = distances(found["train"][0], found[part][0], settings.seed)
            threshold = drift_reference.threshold(len(found[part][0]))
            report[f"train_vs_{part}"] = {
                **overall,
                "threshold": threshold,
                "drift": bool(overall.get("kid", 0.0) > threshold),
                "per_class": class_distances(*found["train"], *found[part], settings.seed),
            }
    return json_safe(report)


def score_ood_sets(
    detectors: dict[str, OODScorer],
    model: ModelBundle,
    image_cache: dict,
    splits: pd.DataFrame,
    params: dict,
) -> pd.DataFrame:
    """``ood_scores``: one row per item, set and detector. Sets: the test items
    (in-distribution), each corruption of them at severities 1-5, the ``shift`` split where
    there is one, and procedural textures (far-OOD)."""
    settings = parse_block(OODParams, params)
    cache = ImageCache.from_arrays(image_cache)
    parts = items_by_part(
        model, cache, splits, [IN_DISTRIBUTION, "shift"], settings.seed, settings.max_items
    )
    sets = measured_sets(parts[IN_DISTRIBUTION], parts.get("shift"), settings.seed)
    return score_sets(load_model(model), detectors, sets)


def summarise_ood(
    scores: pd.DataFrame, detectors: dict[str, OODScorer], selection: dict, params: dict
) -> tuple[OODScorer, dict, pd.DataFrame, dict]:
    """``ood_detector`` (the ``selection``: by parameter or on validation-side sets, never
    by these test figures), ``ood_metrics`` (AUROC, FPR95, AUPR per detector, set and
    severity; a ``summary`` of the chosen detector; how it was chosen;
    ``test_selected_best``, named as the selected score it is), the same as a table, and
    the chosen detector's AUROCs for the MLflow run."""
    settings = parse_block(OODParams, params)
    inside = scores[scores["set"] == IN_DISTRIBUTION]
    table = separation_table(scores, detectors)
    summary, test_selected = detector_summary(table, selection["chosen"])
    by_detector = {
        name: {
            "threshold": scorer.threshold,
            "val_kept": settings.kept,
            "test_flagged_share": float(
                (inside.loc[inside["detector"] == name, "score"] > scorer.threshold).mean()
            ),
            "sets": table[table["detector"] == name].drop(columns="detector").to_dict("records"),
        }
        for name, scorer in detectors.items()
    }
    report = {
        "in_distribution": {"set": IN_DISTRIBUTION, "n": int(len(inside) / len(detectors))},
        "summary": summary,
        "selection": selection,
        "test_selected_best": test_selected,
        "detectors": by_detector,
    }
    headline = as_mlflow_metrics({k: v for k, v in summary.items() if isinstance(v, float)})
    logger.info("OOD: %s", summary)
    return detectors[selection["chosen"]], json_safe(report), table, headline


def plot_ood_scores(scores: pd.DataFrame) -> Figure:
    """Score histograms per detector: test against severity-3 corruptions, shift, far-OOD."""
    names = list(dict.fromkeys(scores["detector"]))
    fig = Figure(figsize=(4 * len(names), 3.5), layout="tight")
    for axes, name in zip(fig.subplots(1, len(names)), names, strict=True):
        part = scores[scores["detector"] == name]
        groups = {
            "test (in)": part[part["set"] == IN_DISTRIBUTION],
            "corrupted, severity 3": part[(part["set"] == "corruption") & (part["severity"] == 3)],
            "shift": part[part["set"] == "shift"],
            "far-OOD textures": part[part["set"] == "far_ood"],
        }
        bins = np.histogram_bin_edges(part["score"], bins=30)
        for label, rows in groups.items():
            if len(rows):
                axes.hist(rows["score"], bins=bins, alpha=0.5, density=True, label=label)
        axes.set(title=name, xlabel="outlier score")
        axes.legend(fontsize="x-small")
    return fig
