"""How well attribution maps agree with ground-truth masks, and how they are distributed.

Localisation metrics come from Quantus (relevance-mass accuracy, pointing game,
relevance-rank accuracy), computed on each sample's views laid side by side so that one
score covers all of them. Every figure has a random-attribution baseline beside it. No Kedro.
"""

from __future__ import annotations

import warnings

import numpy as np
import quantus
import torch
import torch.nn.functional as F
from scipy.ndimage import distance_transform_edt
from sklearn.cluster import KMeans

LOCALISATION = {
    "relevance_mass": quantus.RelevanceMassAccuracy,
    "pointing_game": quantus.PointingGame,
    "relevance_rank": quantus.RelevanceRankAccuracy,
}
# Bands of distance to the defect, in model pixels: inside, then farther and farther out.
DISTANCE_EDGES = (1.0, 3.0, 6.0, 12.0)
DISTANCE_BANDS = ("inside", "1-2 px", "3-5 px", "6-11 px", "12+ px")
INTENSITY_BINS = 8  # equal bins of [0, 1]


def side_by_side(maps: np.ndarray) -> np.ndarray:
    """``(N, V, H, W)`` -> ``(N, 1, H, V * W)``: the views of a sample as one image."""
    n, v, h, w = maps.shape
    return maps.transpose(0, 2, 1, 3).reshape(n, 1, h, v * w)


def localisation_scores(maps: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """Per item, each Quantus localisation score of the positive attribution against the
    mask (both ``(N, V, H, W)``); NaN where the mask is empty (nothing to point at) or the
    positive attribution is flat (nothing points anywhere)."""
    positive = side_by_side(np.clip(maps, 0, None)).astype(np.float64)
    truth = side_by_side(masks > 0).astype(np.float64)
    flat_positive = positive.reshape(len(positive), -1)
    scored = (truth.reshape(len(truth), -1).sum(1) > 0) & (
        flat_positive.max(1) > flat_positive.min(1)
    )
    scores = {name: np.full(len(maps), np.nan) for name in LOCALISATION}
    if not scored.any():
        return scores
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, metric in LOCALISATION.items():
            found = metric(abs=False, normalise=False, disable_warnings=True)(
                model=None,
                x_batch=truth[scored],
                y_batch=np.zeros(int(scored.sum()), dtype=int),
                a_batch=positive[scored],
                s_batch=truth[scored],
            )
            scores[name][scored] = np.asarray(found, dtype=np.float64)
    return scores


def random_maps(view_mask: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Uniform random attributions on the present views: the baseline of every figure."""
    rng = np.random.default_rng(seed)
    return rng.random(shape).astype(np.float32) * view_mask[..., None, None]


def attribution_shares(maps: np.ndarray) -> np.ndarray:
    """Absolute attribution as a share of each item's total (maps sum to 1; 0 if none)."""
    absolute = np.abs(maps)
    total = absolute.reshape(len(maps), -1).sum(1)
    return absolute / np.where(total > 0, total, 1.0)[:, None, None, None]


def view_shares(maps: np.ndarray, view_mask: np.ndarray) -> np.ndarray:
    """``(N, V)`` share of each item's absolute attribution per view; NaN for missing views."""
    shares = attribution_shares(maps).sum((2, 3))
    return np.where(view_mask, shares, np.nan)


def intensity_profile(maps: np.ndarray, images: np.ndarray, view_mask, bins: int = INTENSITY_BINS):
    """Share of absolute attribution, and of present pixels, per intensity bin of [0, 1]."""
    shares = attribution_shares(maps)
    present = np.broadcast_to(view_mask[..., None, None], images.shape)
    index = np.clip((images * bins).astype(int), 0, bins - 1)
    attribution = np.bincount(index[present], shares[present], minlength=bins)
    pixels = np.bincount(index[present], minlength=bins).astype(float)
    return attribution / max(attribution.sum(), 1e-12), pixels / max(pixels.sum(), 1.0)


def distances_to_defect(masks: np.ndarray) -> np.ndarray:
    """Pixel distance to the nearest mask pixel, per item and view (0 inside). A view with
    an empty mask uses the union of its item's views (registered views); inf if all empty."""
    out = np.full(masks.shape, np.inf, dtype=np.float32)
    for i, views in enumerate(masks > 0):
        union = views.any(0)
        for v, mask in enumerate(views):
            reference = mask if mask.any() else union
            if reference.any():
                out[i, v] = distance_transform_edt(~reference)
    return out


def distance_profile(maps: np.ndarray, masks: np.ndarray, view_mask: np.ndarray):
    """Share of absolute attribution, and of present pixels, per band of
    ``DISTANCE_BANDS``."""
    distance = distances_to_defect(masks)
    shares = attribution_shares(maps)
    present = np.broadcast_to(view_mask[..., None, None], maps.shape) & np.isfinite(distance)
    band = np.digitize(distance, DISTANCE_EDGES)
    bands = len(DISTANCE_BANDS)
    attribution = np.bincount(band[present], shares[present], minlength=bands)
    pixels = np.bincount(band[present], minlength=bands).astype(float)
    return attribution / max(attribution.sum(), 1e-12), pixels / max(pixels.sum(), 1.0)


def downsampled(maps: np.ndarray, side: int) -> np.ndarray:
    """Attribution shares pooled to ``side`` x ``side`` per view, flattened, unit length:
    the vectors k-means clusters."""
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(attribution_shares(maps)), side).numpy()
    flat = pooled.reshape(len(maps), -1)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def cluster_maps(maps: np.ndarray, clusters: int, side: int, seed: int) -> np.ndarray:
    """A k-means cluster per map (at most one cluster per map)."""
    k = max(1, min(clusters, len(maps)))
    model = KMeans(n_clusters=k, n_init=10, random_state=seed)
    return model.fit_predict(downsampled(maps, side))


def region_of_interest(mass: np.ndarray, top_mass: float) -> tuple[int, int, int, int]:
    """The box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) around the fewest pixels of a
    ``(H, W)`` attribution-mass map that hold ``top_mass`` of its total."""
    flat = np.abs(mass).ravel()
    order = np.argsort(flat)[::-1]
    needed = int(np.searchsorted(np.cumsum(flat[order]), top_mass * flat.sum())) + 1
    ys, xs = np.unravel_index(order[:needed], mass.shape)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
