"""Nodes of the ``subview`` pipeline. Regions come from attributions on the train split
only; the cropped model is trained and evaluated exactly like the full-view one."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from anomaly_lens.ml.data.cache import ImageCache, collate
from anomaly_lens.ml.data.splitting import ids_by_split
from anomaly_lens.ml.explanation.attribution import ExplainedScores, attribute, default_head
from anomaly_lens.ml.explanation.quality import attribution_shares, region_of_interest
from anomaly_lens.ml.models.bundle import ModelBundle, load_model
from anomaly_lens.ml.training.core import train_on_cache
from anomaly_lens.ml.training.datasets import model_datasets
from anomaly_lens.ml.training.settings import TrainSettings
from anomaly_lens.parameters import SubviewParams, parse_block

logger = logging.getLogger(__name__)


def _train_pairs(cache: ImageCache, dataset, limit: int, seed: int) -> list[tuple[int, str]]:
    """(item, class) for every class a train item carries; a seeded draw of ``limit``."""
    pairs = [
        (k, name)
        for k, (position, _) in enumerate(dataset.items)
        for name, present in zip(cache.classes, cache.labels[position], strict=True)
        if present
    ]
    keep = np.sort(np.random.default_rng(seed).permutation(len(pairs))[:limit])
    return [pairs[i] for i in keep]


def _padded(box: tuple[int, int, int, int], margin: int, side: int) -> list[int]:
    x0, y0, x1, y1 = box
    return [
        max(0, x0 - margin),
        max(0, y0 - margin),
        min(side, x1 + margin),
        min(side, y1 + margin),
    ]


def _mass_per_class_and_view(model, cache, dataset, pairs, attribution) -> dict:
    """Integrated-Gradients share maps of the (item, class) pairs, gathered per (class, view)."""
    batch = collate([dataset[k] for k, _ in pairs])
    network = load_model(model)
    head = default_head(network)
    outputs = model.classes if head == "classification" else list(cache.classes)
    targets = torch.tensor([outputs.index(name) for _, name in pairs])
    found = attribute(
        ExplainedScores(network, head), batch.images, batch.view_mask, targets,
        "integrated_gradients", attribution,
    )  # fmt: skip
    shares = attribution_shares(found.maps.numpy())
    mass: dict[tuple[str, str], list[np.ndarray]] = {}
    for i, (k, name) in enumerate(pairs):
        for slot, j in enumerate(dataset.items[k][1]):
            if batch.view_mask[i, slot]:
                mass.setdefault((name, cache.views[j]), []).append(shares[i, slot])
    return mass


def attribution_regions(
    model: ModelBundle, image_cache: dict, splits: pd.DataFrame, params: dict
) -> dict:
    """``subview_regions``: per class and view, the box holding ``subview.top_mass`` of the
    mean Integrated-Gradients mass over train samples of that class; per view, the crop
    (the union of its classes' boxes, with a margin)."""
    settings = parse_block(SubviewParams, params)
    cache = ImageCache.from_arrays(image_cache)
    train_ids = ids_by_split(splits, ["train"])["train"]
    dataset = model_datasets(cache, {"train": train_ids}, model)["train"]
    pairs = _train_pairs(cache, dataset, settings.max_train_samples, seed=0)
    if not pairs:
        raise ValueError("No train sample carries a class: nothing to find regions for")
    mass = _mass_per_class_and_view(model, cache, dataset, pairs, settings.attribution)
    side = cache.images.shape[-1]
    per_class: dict[str, dict[str, list[int]]] = {}
    crops: dict[str, list[int]] = {}
    for (name, view), maps in sorted(mass.items()):
        box = region_of_interest(np.mean(maps, 0), settings.top_mass)
        per_class.setdefault(name, {})[view] = list(box)
        old = crops.get(view, [side, side, 0, 0])
        crops[view] = [
            *np.minimum(old[:2], box[:2]).tolist(),
            *np.maximum(old[2:], box[2:]).tolist(),
        ]
    crops = {view: _padded(box, settings.margin, side) for view, box in crops.items()}
    logger.info("Sub-view crops (x0, y0, x1, y1) of %d px views: %s", side, crops)
    return {
        "fitted_on": {"split": "train", "n_pairs": len(pairs)},
        "top_mass": settings.top_mass,
        "image_size": side,
        "per_class": per_class,
        "crop": crops,
    }


def _resized(arrays: np.ndarray, box: list[int], side: int, interpolation: int) -> np.ndarray:
    """``(..., H, W)`` arrays cropped to ``box`` and resized back to ``side``."""
    x0, y0, x1, y1 = box
    flat = arrays.reshape(-1, *arrays.shape[-2:])
    out = [cv2.resize(a[y0:y1, x0:x1], (side, side), interpolation=interpolation) for a in flat]
    return np.stack(out).reshape(arrays.shape)


def crop_to_regions(image_cache: dict, regions: dict) -> dict:
    """``subview.image_cache``: every view cropped to its region and resized back to the
    cache's size (images by area, masks by nearest pixel); views without a region whole."""
    cache = ImageCache.from_arrays(image_cache)
    images, masks = cache.images.copy(), cache.masks.copy()
    side = images.shape[-1]
    for view, box in regions["crop"].items():
        j = cache.views.index(view)
        images[:, j] = _resized(images[:, j], box, side, cv2.INTER_AREA)
        masks[:, j] = _resized(masks[:, j], box, side, cv2.INTER_NEAREST)
    return dataclasses.replace(cache, images=images, masks=masks).arrays()


def train_on_crops(
    image_cache: dict, splits: pd.DataFrame, params: dict
) -> tuple[ModelBundle, pd.DataFrame]:
    """``subview.model``: trained on the crops with the ``train`` parameters (checkpoints in
    their own folder), and its epoch history."""
    settings = parse_block(TrainSettings, params)
    folder = str(Path(settings.trainer.checkpoint_dir) / "subview")
    settings = settings.model_copy(
        update={"trainer": settings.trainer.model_copy(update={"checkpoint_dir": folder})}
    )
    result = train_on_cache(ImageCache.from_arrays(image_cache), ids_by_split(splits), settings)
    return result.bundle, result.history


def _test_figures(metrics: dict) -> dict:
    """Test macro-F1 with its interval and per-class F1, per sample (per-view models: the
    mean of a sample's photos)."""
    test = metrics["test"].get("per_sample", metrics["test"])
    return {
        "test_macro_f1": test["macro_f1"],
        "test_macro_f1_ci95": test["macro_f1_ci95"],
        **{f"f1_{name}": entry["f1"] for name, entry in test["per_class"].items()},
    }


def compare_subview(full_metrics: dict, subview_metrics: dict, regions: dict) -> dict:
    """``subview_report``: the sub-view model's test figures beside the full-view model's."""
    full, cropped = _test_figures(full_metrics), _test_figures(subview_metrics)
    low, high = full["test_macro_f1_ci95"]
    change = cropped["test_macro_f1"] - full["test_macro_f1"]
    inside = low <= cropped["test_macro_f1"] <= high
    verdict = (
        f"Sub-view test macro-F1 {cropped['test_macro_f1']:.3f} vs full view "
        f"{full['test_macro_f1']:.3f} ({change:+.3f}); "
        + ("within" if inside else "outside")
        + " the full-view model's 95 % interval."
    )
    logger.info(verdict)
    return {
        "regions": regions["crop"],
        "comparison": {"full_view": full, "subview": cropped},
        "change_in_test_macro_f1": change,
        "verdict": verdict,
    }
