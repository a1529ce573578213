"""Nodes of the ``xai`` pipeline: pick samples, attribute, score against the masks.

Samples come from the evaluation split named by ``xai.split`` (the test split by default;
nothing is fitted on them). A per-view model's sample is explained through all its photos,
each photo's own score, so that the shares per view say which photo carries a decision.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from anomaly_lens.ml.data.cache import ImageCache, collate
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.evaluation.predictions import (
    mask_classes,
    per_sample_table,
    probability_columns,
)
from anomaly_lens.ml.explanation.attribution import (
    ExplainedScores,
    attribute,
    curve_area,
    default_head,
    deletion_curves,
    per_view_grad_cam,
)
from anomaly_lens.ml.explanation.quality import (
    DISTANCE_BANDS,
    INTENSITY_BINS,
    LOCALISATION,
    distance_profile,
    intensity_profile,
    localisation_scores,
    random_maps,
)
from anomaly_lens.ml.models.bundle import load_model
from anomaly_lens.ml.serving.predictor import DecisionRule
from anomaly_lens.ml.training.datasets import model_datasets
from anomaly_lens.parameters import parse_block
from anomaly_lens.pipelines.xai.report import render
from anomaly_lens.tracking import as_mlflow_metrics

logger = logging.getLogger(__name__)

IG = "integrated_gradients"


def _predicted(probs: pd.DataFrame, classes: list[str], label_type: str) -> pd.DataFrame:
    """Per row and class, whether the model predicts it (``DecisionRule``'s default: 0.5,
    or the most probable class)."""
    decisions, _, _ = DecisionRule().apply(probs.to_numpy(), label_type)
    return pd.DataFrame(decisions.astype(bool), columns=classes, index=probs.index)


def _draw(rows: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    return rows.sample(n=min(count, len(rows)), random_state=seed) if count else rows.iloc[:0]


def _label_rows(image_cache: dict, splits: pd.DataFrame, part: str, classes) -> pd.DataFrame:
    """A segmentation-only model has no class scores: its samples' labels stand in for
    them (probability 1 where the class is present), so the selection takes samples that
    carry each class."""
    cache = ImageCache.from_arrays(image_cache)
    ids = splits.loc[splits["split"] == part, "sample_id"].tolist()
    targets = cache.labels[cache.positions(ids)].astype(np.float32)
    names = mask_classes(classes)
    frame = pd.DataFrame(targets, columns=probability_columns("target", names))
    frame[probability_columns("prob", names)] = targets
    if "normal" in classes:
        frame["prob_normal"] = frame["target_normal"] = (targets.sum(1) == 0).astype(float)
    return frame.assign(sample_id=ids)


def select_explained(
    predictions: pd.DataFrame,
    model: dict,
    image_cache: dict,
    splits: pd.DataFrame,
    params: dict,
) -> pd.DataFrame:
    """``xai_selection``: per class (``normal`` aside), samples predicted right, wrong
    (missed first, then false alarms) and most confidently; one row per sample and class,
    at most ``xai.max_samples`` rows, the classes taking turns. For a segmentation-only
    model (no class scores): samples that carry each class."""
    settings = parse_block("xai", params)
    classes, label_type = model["classes"], model["label_type"]
    if "split" not in predictions:  # no class scores: a segmentation-only model
        rows = _label_rows(image_cache, splits, settings.split, classes)
    else:
        rows = predictions[predictions["split"] == settings.split]
        if model["per_view"]:
            rows = per_sample_table(rows, classes, sort=True)
    if rows.empty:
        raise ValueError(f"No {settings.split} predictions to explain: run `train` first")
    rows = rows.reset_index(drop=True)
    probs = rows[probability_columns("prob", classes)].set_axis(classes, axis=1)
    targets = rows[probability_columns("target", classes)].set_axis(classes, axis=1) > 0
    predicted = _predicted(probs, classes, label_type)
    per_class, quota = [], settings.per_class
    for k, name in enumerate(mask_classes(classes)):
        table = pd.DataFrame(
            {
                "sample_id": rows["sample_id"],
                "class": name,
                "prob": probs[name],
                "target": targets[name].astype(int),
            }
        )
        seed = settings.seed + k
        correct = _draw(table[targets[name] & predicted[name]], quota.correct, seed)
        missed = table[targets[name] & ~predicted[name]]
        false_alarms = table[~targets[name] & predicted[name]]
        wrong = pd.concat(
            [_draw(missed, quota.wrong, seed), _draw(false_alarms, quota.wrong, seed)]
        )
        chosen = pd.concat(
            [correct.assign(reason="correct"), wrong.iloc[: quota.wrong].assign(reason="wrong")]
        )
        rest = table.drop(index=chosen.index).nlargest(quota.most_confident, "prob")
        per_class.append(pd.concat([chosen, rest.assign(reason="most_confident")]))
    # Classes take turns, so a cap keeps every class.
    turns = pd.concat([t.assign(turn=range(len(t))) for t in per_class])
    selection = turns.sort_values(["turn", "class"], kind="stable").head(settings.max_samples)
    logger.info(
        "Explaining %d (sample, class) pairs of the %s split", len(selection), settings.split
    )
    return selection.drop(columns="turn").reset_index(drop=True)


def _cross_attention(network, images: torch.Tensor, view_mask: torch.Tensor, batch_size: int):
    """``(N, V, h, w)``: attention each last-stage token receives from the tokens of the
    other views (mean over heads and attending tokens); None for other fusions."""
    if network.config.fusion != "cross_attention":
        return None
    received = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            output = network(images[i : i + batch_size], view_mask[i : i + batch_size])
            weights = output.attention.mean(1)  # (B, V*T, V*T): queries x keys
            received.append(weights.mean(1))
    n, v = view_mask.shape
    tokens = torch.cat(received)
    side = int(round((tokens.shape[1] / v) ** 0.5))
    return (tokens.view(n, v, side, side) * view_mask[..., None, None]).numpy()


def _explained_items(cache: ImageCache, selection: pd.DataFrame, model: dict):
    """The dataset of the selected samples and, per explanation, (selection row, item)."""
    ids = list(pd.unique(selection["sample_id"]))
    dataset = model_datasets(cache, {"explained": ids}, model)["explained"]
    item_samples = cache.sample_ids[dataset.positions]
    pairs = [
        (row, int(item))
        for row, sample in enumerate(selection["sample_id"])
        for item in np.flatnonzero(item_samples == sample)
    ]
    return dataset, pairs


def explain_selection(
    model: dict, image_cache: dict, selection: pd.DataFrame, params: dict
) -> dict:
    """``xai_attributions``: every configured method's maps of the selected pairs (one per
    photo of a per-view model), the inputs and masks they are scored against, deletion
    curves (the method's order and a random one), cross-attention maps and timings."""
    settings = parse_block("xai", params)
    cache = ImageCache.from_arrays(image_cache)
    dataset, pairs = _explained_items(cache, selection, model)
    items = [dataset[item] for _, item in pairs]
    batch = collate(items)
    rows = selection.iloc[[row for row, _ in pairs]].reset_index(drop=True)
    rows.insert(1, "item_id", batch.sample_ids)
    rows.insert(0, "pair", [row for row, _ in pairs])
    network = load_model(model)
    head = default_head(network) if settings.head == "auto" else settings.head
    scores = ExplainedScores(network, head)
    mask_classes = list(cache.classes)
    outputs = model["classes"] if head == "classification" else mask_classes
    targets = torch.tensor([outputs.index(c) for c in rows["class"]])
    masks = np.stack(
        [
            cache.masks[dataset.items[item][0]][dataset.items[item][1], mask_classes.index(c)]
            for (_, item), c in zip(pairs, rows["class"], strict=True)
        ]
    )
    slot_views = [[cache.views[j] for j in dataset.items[item][1]] for _, item in pairs]
    images, view_mask = batch.images, batch.view_mask
    attribution = settings.attribution
    maps, seconds, deletion = {}, {}, {}

    def deletion_curve(order: torch.Tensor) -> np.ndarray:
        return deletion_curves(
            scores,
            images,
            view_mask,
            targets,
            order,
            settings.deletion_steps,
            settings.deletion_fill,
        ).numpy()

    for method in tqdm(attribution.methods, desc="Attributions", unit="method", disable=None):
        found = attribute(scores, images, view_mask, targets, method, attribution)
        maps[method], seconds[method] = found.maps.numpy(), found.seconds_per_image
        deletion[method] = deletion_curve(found.maps)
        logger.info("%s: %.3f s per image", method, found.seconds_per_image)
    noise = random_maps(view_mask.numpy(), masks.shape, settings.seed)
    deletion["random"] = deletion_curve(torch.from_numpy(noise))
    config = network.config
    return {
        "rows": rows,
        "slot_views": slot_views,
        "views": list(model["views"]),
        "images": images.mean(2).numpy().astype(np.float32),
        "view_mask": view_mask.numpy(),
        "masks": masks.astype(np.uint8),
        "maps": maps,
        "deletion": deletion,
        "seconds_per_image": seconds,
        "attention": _cross_attention(network, images, view_mask, attribution.batch_size),
        "grad_cam_per_view": per_view_grad_cam(network),
        "model": {
            "backbone": config.backbone,
            "fusion": config.fusion,
            "task": config.task,
            "head": head,
            "views": model["views"],
            "per_view": model["per_view"],
            "classes": model["classes"],
            "label_type": model["label_type"],
            "trained_at": model.get("trained_at"),
        },
        "split": settings.split,
    }


def _abs_per_view(maps: np.ndarray, bundle: dict) -> pd.DataFrame:
    """Absolute attribution per (decision, view): a fused model's view slots, or a per-view
    model's photos of one sample; a decision is one selection row."""
    totals = np.abs(maps).sum((2, 3))
    records = [
        {"pair": pair, "view": view, "mass": float(totals[i, j])}
        for i, (pair, views) in enumerate(
            zip(bundle["rows"]["pair"], bundle["slot_views"], strict=True)
        )
        for j, view in enumerate(views)
        if bundle["view_mask"][i, j]
    ]
    return pd.DataFrame(records, columns=["pair", "view", "mass"])


def view_share_table(maps: np.ndarray, bundle: dict) -> pd.DataFrame:
    """Per positive decision (the class is present) with every view present, and per view,
    the view's share of the decision's absolute attribution, with the decision's class.
    (With a view missing, the others would take its share by default.)"""
    mass = _abs_per_view(maps, bundle)
    complete = mass.groupby("pair")["view"].transform("nunique") == len(bundle["views"])
    mass = mass[complete]
    total = mass.groupby("pair")["mass"].transform("sum")
    mass["share"] = mass["mass"] / total.where(total > 0)
    decisions = bundle["rows"].drop_duplicates("pair").set_index("pair")
    mass["class"] = decisions.loc[mass["pair"], "class"].to_numpy()
    positive = decisions.loc[mass["pair"], "target"].to_numpy() > 0
    return mass[positive]


def _mean(values) -> float | None:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def _quality(bundle: dict, method: str, found: dict, random: dict, positive: np.ndarray) -> dict:
    """Per class: one method's localisation scores (``found``) and deletion AUC, with the
    random baseline's beside each."""
    rows = bundle["rows"]
    deletion = curve_area(torch.from_numpy(bundle["deletion"][method])).numpy()
    deletion_random = curve_area(torch.from_numpy(bundle["deletion"]["random"])).numpy()
    out = {}
    for name in pd.unique(rows["class"]):
        keep = (rows["class"] == name).to_numpy() & positive
        entry = {"n_positive": int(keep.sum())}
        for metric in LOCALISATION:
            entry[metric] = _mean(found[metric][keep])
            entry[f"{metric}_random"] = _mean(random[metric][keep])
        entry["deletion_auc"] = _mean(deletion[keep])
        entry["deletion_auc_random"] = _mean(deletion_random[keep])
        out[name] = entry
    return out


def _profile(found: tuple[np.ndarray, np.ndarray]) -> dict[str, list[float]]:
    return {"attribution": found[0].tolist(), "pixels": found[1].tolist()}


def _mask_area(bundle: dict) -> pd.Series:
    """Median share of an item's present pixels its class's mask covers, per class."""
    masks, present = bundle["masks"] > 0, bundle["view_mask"]
    pixels = present.sum(1) * masks[0, 0].size
    area = masks.reshape(len(masks), -1).sum(1) / np.maximum(pixels, 1)
    rows = bundle["rows"]
    positive = rows["target"].to_numpy() > 0
    return pd.Series(area[positive]).groupby(rows["class"].to_numpy()[positive]).median()


def _checks(metrics: dict, visible_in_views: dict | None, area: pd.Series, settings) -> list:
    """The ground-truth checks: view share of single-view types, pointing game of the
    larger types, every method above its random baseline on relevance mass (over all
    images with a mask; per class in ``quality``)."""
    checks = []
    for name, views in (visible_in_views or {}).items():
        if len(views) != 1:
            continue
        for method in (IG, "grad_cam"):
            share = metrics["view_share"].get(method, {}).get(name, {}).get(views[0])
            if share is not None:
                checks.append(
                    {
                        "check": f"share of attribution on {views[0]}",
                        "method": method,
                        "class": name,
                        "value": float(share),
                        "bound": settings.checks.view_share_min,
                        "passed": bool(share >= settings.checks.view_share_min),
                    }
                )
    for name, value in area.items():
        hits = metrics["quality"].get(IG, {}).get(name, {}).get("pointing_game")
        if value >= settings.checks.large_type_min_area and hits is not None:
            checks.append(
                {
                    "check": "pointing game (larger types)",
                    "method": IG,
                    "class": name,
                    "value": float(hits),
                    "bound": settings.checks.pointing_game_min,
                    "passed": bool(hits >= settings.checks.pointing_game_min),
                }
            )
    for method, pooled in metrics["relevance_mass_pooled"].items():
        if pooled["method"] is not None:
            checks.append(
                {
                    "check": "relevance mass above random (all classes)",
                    "method": method,
                    "class": "all",
                    "value": pooled["method"],
                    "bound": pooled["random"],
                    "passed": bool(pooled["method"] > pooled["random"]),
                }
            )
    return checks


def score_explanations(
    attributions: dict, raw_metadata: dict | None, params: dict
) -> tuple[dict, dict]:
    """``xai_metrics`` and their headline figures for MLflow: per method and class, the
    localisation scores, deletion AUC and random baselines; the attribution share per
    view; intensity and distance profiles (Integrated Gradients); seconds per image; the
    ground-truth checks where the data's metadata says which view shows which type."""
    settings = parse_block("xai", params)
    bundle = attributions
    rows = bundle["rows"]
    positive = rows["target"].to_numpy() > 0
    noise = random_maps(bundle["view_mask"], bundle["masks"].shape, settings.seed)
    random = localisation_scores(noise, bundle["masks"])
    metrics = {
        "split": bundle["split"],
        "model": bundle["model"],
        "n_decisions": int(rows["pair"].nunique()),
        "n_explained_images": len(rows),
        "n_positive_images": int(positive.sum()),
        "seconds_per_image": bundle["seconds_per_image"],
        "distance_bands": list(DISTANCE_BANDS),
        "intensity_bins": INTENSITY_BINS,
        "quality": {},
        "view_share": {},
    }
    metrics["relevance_mass_pooled"] = {}
    for method, maps in bundle["maps"].items():
        found = localisation_scores(maps, bundle["masks"])
        metrics["quality"][method] = _quality(bundle, method, found, random, positive)
        metrics["relevance_mass_pooled"][method] = {
            "method": _mean(found["relevance_mass"][positive]),
            "random": _mean(random["relevance_mass"][positive]),
        }
        if method == "grad_cam" and not bundle["grad_cam_per_view"]:
            continue  # early fusion: one map for the stacked views, no share per view
        shares = view_share_table(maps, bundle)
        metrics["view_share"][method] = {
            name: part.groupby("view")["share"].mean().to_dict()
            for name, part in shares.groupby("class")
        }
    visible = (raw_metadata or {}).get("visible_in_views")
    ig = bundle["maps"].get(IG)
    metrics["per_class"] = {}
    for name in pd.unique(rows["class"]):
        keep = (rows["class"] == name).to_numpy() & positive
        entry = {
            "n_decisions": int(rows.loc[rows["class"] == name, "pair"].nunique()),
            "n_positive_images": int(keep.sum()),
            "view_share": metrics["view_share"].get(IG, {}).get(name),
            "visible_in_views": (visible or {}).get(name),
        }
        if ig is not None and keep.any():
            images, present = bundle["images"][keep], bundle["view_mask"][keep]
            intensity = intensity_profile(ig[keep], images, present)
            distance = distance_profile(ig[keep], bundle["masks"][keep], present)
            entry["intensity_profile"] = _profile(intensity)
            entry["distance_profile"] = _profile(distance)
        metrics["per_class"][name] = entry
    metrics["checks"] = _checks(metrics, visible, _mask_area(bundle), settings)
    metrics["checks_passed"] = all(c["passed"] for c in metrics["checks"])
    headline = {}
    for method, per_class in metrics["quality"].items():
        for key in ("relevance_mass", "pointing_game", "deletion_auc"):
            value = _mean([e[key] for e in per_class.values() if e[key] is not None])
            if value is not None:
                headline[f"{method}.{key}"] = value
        headline[f"{method}.seconds_per_image"] = bundle["seconds_per_image"][method]
    headline["checks_passed"] = float(metrics["checks_passed"])
    return json_safe(metrics), as_mlflow_metrics(headline)


def render_xai_report(
    attributions: dict, metrics: dict, subview_report: dict | None, params: dict
) -> str:
    """``xai_report``: the self-contained HTML page (``report.render``)."""
    return render(attributions, metrics, subview_report, parse_block("xai", params))
