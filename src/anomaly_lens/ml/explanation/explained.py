"""Attributions of the selected (sample, class) pairs, with everything scoring and the
report need: inputs, masks, deletion curves, cross-attention, timings."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from anomaly_lens.ml.data.cache import ImageCache, MultiViewDataset, collate
from anomaly_lens.ml.explanation.attribution import (
    ExplainedScores,
    attribute,
    default_head,
    deletion_curves,
    per_view_grad_cam,
)
from anomaly_lens.ml.explanation.quality import random_maps
from anomaly_lens.ml.explanation.settings import XaiParams
from anomaly_lens.ml.models.bundle import ModelBundle, load_model
from anomaly_lens.ml.training.datasets import model_datasets

logger = logging.getLogger(__name__)


def cross_attention(network, images: torch.Tensor, view_mask: torch.Tensor, batch_size: int):
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


def explained_items(
    cache: ImageCache, selection: pd.DataFrame, model: ModelBundle
) -> tuple[MultiViewDataset, list[tuple[int, int]]]:
    """The dataset of the selected samples and, per explanation, (selection row, item):
    one item per sample, or one per photo of a per-view model."""
    ids = list(pd.unique(selection["sample_id"]))
    dataset = model_datasets(cache, {"explained": ids}, model)["explained"]
    item_samples = cache.sample_ids[dataset.positions]
    pairs = [
        (row, int(item))
        for row, sample in enumerate(selection["sample_id"])
        for item in np.flatnonzero(item_samples == sample)
    ]
    return dataset, pairs


def _attributions(scores, images, view_mask, targets, masks_shape, settings: XaiParams):
    """Every method's maps, seconds per image and deletion curves (and a random order's)."""
    maps, seconds, deletion = {}, {}, {}

    def curve(order: torch.Tensor) -> np.ndarray:
        found = deletion_curves(
            scores, images, view_mask, targets, order, settings.deletion_steps,
            settings.deletion_fill,
        )  # fmt: skip
        return found.numpy()

    for method in tqdm(settings.attribution.methods, desc="Attributions", disable=None):
        found = attribute(scores, images, view_mask, targets, method, settings.attribution)
        maps[method], seconds[method] = found.maps.numpy(), found.seconds_per_image
        deletion[method] = curve(found.maps)
        logger.info("%s: %.3f s per image", method, found.seconds_per_image)
    noise = random_maps(view_mask.numpy(), masks_shape, settings.seed)
    deletion["random"] = curve(torch.from_numpy(noise))
    return maps, seconds, deletion


def explain_pairs(
    model: ModelBundle, cache: ImageCache, selection: pd.DataFrame, settings: XaiParams
) -> dict:
    """Every configured method's maps of the selected pairs, the inputs and masks they are
    scored against, deletion curves, cross-attention maps, timings and the model."""
    dataset, pairs = explained_items(cache, selection, model)
    batch = collate([dataset[item] for _, item in pairs])
    rows = selection.iloc[[row for row, _ in pairs]].reset_index(drop=True)
    rows.insert(1, "item_id", batch.sample_ids)
    rows.insert(0, "pair", [row for row, _ in pairs])
    network = load_model(model)
    head = default_head(network) if settings.head == "auto" else settings.head
    outputs = model.classes if head == "classification" else list(cache.classes)
    targets = torch.tensor([outputs.index(c) for c in rows["class"]])
    masks = np.stack(
        [cache.masks[dataset.items[item][0]][dataset.items[item][1], cache.classes.index(c)]
         for (_, item), c in zip(pairs, rows["class"], strict=True)]
    )  # fmt: skip
    images, view_mask = batch.images, batch.view_mask
    maps, seconds, deletion = _attributions(
        ExplainedScores(network, head), images, view_mask, targets, masks.shape, settings
    )
    config = network.config
    described = {
        k: getattr(model, k) for k in ("views", "per_view", "classes", "label_type", "trained_at")
    }
    return {
        "rows": rows,
        "slot_views": [[cache.views[j] for j in dataset.items[item][1]] for _, item in pairs],
        "views": list(model.views),
        "images": images.mean(2).numpy().astype(np.float32),
        "view_mask": view_mask.numpy(),
        "masks": masks.astype(np.uint8),
        "maps": maps,
        "deletion": deletion,
        "seconds_per_image": seconds,
        "attention": cross_attention(network, images, view_mask, settings.attribution.batch_size),
        "grad_cam_per_view": per_view_grad_cam(network),
        "model": {"backbone": config.backbone, "fusion": config.fusion, "task": config.task,
                  "head": head, **described},
        "split": settings.split,
    }  # fmt: skip
