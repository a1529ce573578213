"""Scores of explanations against the masks: localisation and deletion per method and
class beside random baselines, the attribution share per view, intensity and distance
profiles, and the ground-truth checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from anomaly_lens.ml.explanation.attribution import curve_area
from anomaly_lens.ml.explanation.quality import (
    DISTANCE_BANDS,
    INTENSITY_BINS,
    LOCALISATION,
    distance_profile,
    intensity_profile,
    localisation_scores,
    random_maps,
)
from anomaly_lens.ml.explanation.settings import XaiChecks

IG = "integrated_gradients"


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


def _localisation(rows: pd.DataFrame, found: dict, random: dict, positive: np.ndarray) -> dict:
    """Per class: the mean localisation scores (``found``) of its positive images, with
    the random baseline's beside each."""
    out = {}
    for name in pd.unique(rows["class"]):
        keep = (rows["class"] == name).to_numpy() & positive
        entry = {"n_positive": int(keep.sum())}
        for metric in LOCALISATION:
            entry[metric] = _mean(found[metric][keep])
            entry[f"{metric}_random"] = _mean(random[metric][keep])
        out[name] = entry
    return out


def _quality(bundle: dict, method: str, found: dict, random: dict, positive: np.ndarray) -> dict:
    """Per class: one method's localisation scores (``found``) and deletion AUC, with the
    random baseline's beside each."""
    rows = bundle["rows"]
    deletion = curve_area(torch.from_numpy(bundle["deletion"][method])).numpy()
    deletion_random = curve_area(torch.from_numpy(bundle["deletion"]["random"])).numpy()
    out = _localisation(rows, found, random, positive)
    for name, entry in out.items():
        keep = (rows["class"] == name).to_numpy() & positive
        entry["deletion_auc"] = _mean(deletion[keep])
        entry["deletion_auc_random"] = _mean(deletion_random[keep])
    return out


def map_localisation(bundle: dict, maps: np.ndarray, seed: int) -> dict:
    """Per class: the localisation scores of any other map of the explained images (a
    one-class detector's anomaly map) against their masks, scored as the attributions
    are, with the same random baseline."""
    positive = bundle["rows"]["target"].to_numpy() > 0
    noise = random_maps(bundle["view_mask"], bundle["masks"].shape, seed)
    random = localisation_scores(noise, bundle["masks"])
    return _localisation(
        bundle["rows"], localisation_scores(maps, bundle["masks"]), random, positive
    )


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


def _checks(
    metrics: dict, visible_in_views: dict | None, area: pd.Series, bounds: XaiChecks
) -> list:
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
                        "bound": bounds.view_share_min,
                        "passed": bool(share >= bounds.view_share_min),
                    }
                )
    for name, value in area.items():
        hits = metrics["quality"].get(IG, {}).get(name, {}).get("pointing_game")
        if value >= bounds.large_type_min_area and hits is not None:
            checks.append(
                {
                    "check": "pointing game (larger types)",
                    "method": IG,
                    "class": name,
                    "value": float(hits),
                    "bound": bounds.pointing_game_min,
                    "passed": bool(hits >= bounds.pointing_game_min),
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


def _per_view_and_quality(bundle: dict, random: dict, positive: np.ndarray) -> dict:
    """Per method: quality per class, pooled relevance mass (with random's) and the
    attribution share per view and class."""
    found_all = {"quality": {}, "relevance_mass_pooled": {}, "view_share": {}}
    for method, maps in bundle["maps"].items():
        found = localisation_scores(maps, bundle["masks"])
        found_all["quality"][method] = _quality(bundle, method, found, random, positive)
        found_all["relevance_mass_pooled"][method] = {
            "method": _mean(found["relevance_mass"][positive]),
            "random": _mean(random["relevance_mass"][positive]),
        }
        if method == "grad_cam" and not bundle["grad_cam_per_view"]:
            continue  # early fusion: one map for the stacked views, no share per view
        shares = view_share_table(maps, bundle)
        found_all["view_share"][method] = {
            name: part.groupby("view")["share"].mean().to_dict()
            for name, part in shares.groupby("class")
        }
    return found_all


def _per_class(bundle: dict, view_share: dict, visible: dict | None, positive) -> dict:
    """Per class: decisions, positive images, IG's view share and, where IG ran, its
    intensity and distance profiles."""
    rows, ig, out = bundle["rows"], bundle["maps"].get(IG), {}
    for name in pd.unique(rows["class"]):
        keep = (rows["class"] == name).to_numpy() & positive
        entry = {
            "n_decisions": int(rows.loc[rows["class"] == name, "pair"].nunique()),
            "n_positive_images": int(keep.sum()),
            "view_share": view_share.get(IG, {}).get(name),
            "visible_in_views": (visible or {}).get(name),
        }
        if ig is not None and keep.any():
            images, present = bundle["images"][keep], bundle["view_mask"][keep]
            entry["intensity_profile"] = _profile(intensity_profile(ig[keep], images, present))
            entry["distance_profile"] = _profile(
                distance_profile(ig[keep], bundle["masks"][keep], present)
            )
        out[name] = entry
    return out


def headline(metrics: dict) -> dict[str, float]:
    """Per method, the mean over classes of relevance mass, pointing game and deletion AUC,
    its seconds per image; whether every check passed."""
    figures = {}
    for method, per_class in metrics["quality"].items():
        for key in ("relevance_mass", "pointing_game", "deletion_auc"):
            value = _mean([e[key] for e in per_class.values() if e[key] is not None])
            if value is not None:
                figures[f"{method}.{key}"] = value
        figures[f"{method}.seconds_per_image"] = metrics["seconds_per_image"][method]
    return figures | {"checks_passed": float(metrics["checks_passed"])}


def score_attributions(
    bundle: dict, visible_in_views: dict | None, checks: XaiChecks, seed: int
) -> dict:
    """Everything ``xai_metrics`` reports of ``explain_pairs``' output; ``visible_in_views``
    (the data's metadata: which view shows which type) adds the ground-truth checks."""
    rows = bundle["rows"]
    positive = rows["target"].to_numpy() > 0
    noise = random_maps(bundle["view_mask"], bundle["masks"].shape, seed)
    metrics = {
        "split": bundle["split"],
        "model": bundle["model"],
        "n_decisions": int(rows["pair"].nunique()),
        "n_explained_images": len(rows),
        "n_positive_images": int(positive.sum()),
        "seconds_per_image": bundle["seconds_per_image"],
        "distance_bands": list(DISTANCE_BANDS),
        "intensity_bins": INTENSITY_BINS,
        **_per_view_and_quality(bundle, localisation_scores(noise, bundle["masks"]), positive),
    }
    metrics["per_class"] = _per_class(bundle, metrics["view_share"], visible_in_views, positive)
    metrics["checks"] = _checks(metrics, visible_in_views, _mask_area(bundle), checks)
    metrics["checks_passed"] = all(c["passed"] for c in metrics["checks"])
    return metrics
