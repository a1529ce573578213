"""Deterministic synthetic multi-view inspection data.

A *sample* is one (specimen, condition) pair imaged in several views (``co2`` and ``ch4``
by default). Every specimen has its own background texture, shared by its conditions and
different per view; a condition changes the lighting. Each anomaly type has a distinct
shape and is visible only in a known set of views, so multi-view fusion and per-view
explanations can be checked against ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage

from anomaly_lens.ml.data import rle


@dataclass(frozen=True)
class AnomalyType:
    """One kind of anomaly: its shape renderer and the views in which it shows."""

    name: str
    views: tuple[str, ...]
    rare: bool = False


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and make-up of the generated dataset."""

    seed: int = 42
    n_specimens: int = 150
    conditions: tuple[str, ...] = ("c0", "c1", "c2", "c3")
    views: tuple[str, ...] = ("co2", "ch4")
    image_size: int = 128
    normal_fraction: float = 0.4
    rare_fraction: float = 0.03
    missing_view_fraction: float = 0.05
    anomaly_types: tuple[AnomalyType, ...] = field(
        default_factory=lambda: (
            AnomalyType("plume", ("co2",)),
            AnomalyType("streak", ("co2", "ch4")),
            AnomalyType("hotspot", ("ch4",)),
            AnomalyType("crack", ("co2", "ch4"), rare=True),
        )
    )

    @classmethod
    def from_params(cls, params: Mapping) -> SyntheticConfig:
        """Build from the ``synthetic`` parameters block (anomaly types as a mapping)."""
        values = dict(params)
        types = values.pop("anomaly_types", None)
        for key in ("conditions", "views"):
            if key in values:
                values[key] = tuple(values[key])
        config = cls(**values)
        if types is not None:
            parsed = tuple(
                AnomalyType(name, tuple(spec["views"]), bool(spec.get("rare", False)))
                for name, spec in types.items()
            )
            config = cls(**{**values, "anomaly_types": parsed})
        config.validate()
        return config

    def validate(self) -> None:
        """Reject settings that cannot produce the promised dataset."""
        if self.image_size < 32:
            raise ValueError("image_size must be at least 32 pixels")
        if not 0 <= self.normal_fraction < 1:
            raise ValueError("normal_fraction must be in [0, 1)")
        if sum(t.rare for t in self.anomaly_types) > 1:
            raise ValueError("at most one anomaly type can be rare")
        if sum(not t.rare for t in self.anomaly_types) == 0:
            raise ValueError("at least one anomaly type must be common")
        shapes = {t.name for t in self.anomaly_types} - set(RENDERERS)
        if shapes:
            raise ValueError(
                f"no renderer for anomaly types {sorted(shapes)}; known: {sorted(RENDERERS)}"
            )
        unknown = {v for t in self.anomaly_types for v in t.views} - set(self.views)
        if unknown:
            raise ValueError(f"anomaly types name unknown views: {sorted(unknown)}")


@dataclass
class SyntheticDataset:
    """Everything the generator writes: encoded-free pixels plus tables."""

    images: dict[str, np.ndarray]  # image id ("co2/S0001_c0") -> (H, W) uint8
    annotations: pd.DataFrame  # ImageId, ClassId, EncodedPixels
    objects: pd.DataFrame  # ground-truth boxes, one row per rendered object
    metadata: dict


# ---------------------------------------------------------------- shape renderers
# Each returns (intensity field in [0, 1] or [-1, 0], boolean mask) on a (size, size) grid.


def _plume(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse, elongated gas plume."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy, cx = rng.uniform(0.3 * size, 0.7 * size, 2)
    sy, sx = rng.uniform(0.08, 0.12) * size, rng.uniform(0.04, 0.07) * size
    angle = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    field_ = np.exp(-0.5 * ((u / sy) ** 2 + (v / sx) ** 2))
    return field_ * 0.55, field_ > 0.3


def _streak(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Thin straight bright streak."""
    mask = np.zeros((size, size), dtype=bool)
    length = rng.uniform(0.35, 0.6) * size
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.3 * size, 0.7 * size, 2)
    t = np.linspace(-length / 2, length / 2, int(length * 2))
    ys = np.clip(np.round(cy + t * np.sin(angle)).astype(int), 0, size - 1)
    xs = np.clip(np.round(cx + t * np.cos(angle)).astype(int), 0, size - 1)
    mask[ys, xs] = True
    mask = ndimage.binary_dilation(mask, iterations=1)
    return mask * 0.45, mask


def _hotspot(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Small, sharp, very bright spot."""
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.uniform(0.15 * size, 0.85 * size, 2)
    radius = rng.uniform(0.03, 0.045) * size
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask * 0.7, mask


def _crack(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Dark branching crack: a random walk with side branches."""
    mask = np.zeros((size, size), dtype=bool)

    def walk(y: float, x: float, heading: float, steps: int, branch: bool) -> None:
        for _ in range(steps):
            heading += rng.normal(0, 0.35)
            y, x = y + np.sin(heading), x + np.cos(heading)
            iy, ix = int(round(y)), int(round(x))
            if not (1 <= iy < size - 1 and 1 <= ix < size - 1):
                return
            mask[iy, ix] = True
            if branch and rng.random() < 0.04:
                walk(y, x, heading + rng.choice([-1, 1]) * rng.uniform(0.6, 1.2), steps // 3, False)

    walk(*rng.uniform(0.3 * size, 0.7 * size, 2), rng.uniform(0, 2 * np.pi), int(0.5 * size), True)
    mask = ndimage.binary_dilation(mask, structure=np.ones((2, 2), dtype=bool))
    return mask * -0.5, mask


RENDERERS: dict[str, Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]] = {
    "plume": _plume,
    "streak": _streak,
    "hotspot": _hotspot,
    "crack": _crack,
}


# ---------------------------------------------------------------- backgrounds


def _texture(rng: np.random.Generator, size: int, view_index: int) -> np.ndarray:
    """Specimen texture in [-1, 1]; coarse for the first view, fine-grained for others."""
    sigma = 6.0 if view_index == 0 else 1.5
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma)
    noise /= np.abs(noise).max() + 1e-8
    if view_index == 0:  # horizontal banding, as from a line scanner
        rows = np.sin(np.arange(size) * rng.uniform(0.15, 0.3) + rng.uniform(0, 6))
        noise = 0.7 * noise + 0.3 * rows[:, None]
    return noise


def _lighting(rng: np.random.Generator, size: int) -> np.ndarray:
    """Uneven illumination: a tilted plane times a vignette, around 1."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    plane = 1 + rng.uniform(0.15, 0.35) * (xx * np.cos(angle) + yy * np.sin(angle))
    vignette = 1 - rng.uniform(0.1, 0.3) * (xx**2 + yy**2)
    return plane * vignette


def _draw_labels(rng: np.random.Generator, config: SyntheticConfig) -> list[str]:
    """Multi-label draw: normal with ``normal_fraction``; otherwise 1-3 types, rare one rarely."""
    if rng.random() < config.normal_fraction:
        return []
    common = [t.name for t in config.anomaly_types if not t.rare]
    rare = [t.name for t in config.anomaly_types if t.rare]
    labels: list[str] = []
    if rare and rng.random() < config.rare_fraction / (1 - config.normal_fraction):
        labels.append(rare[0])
    count = rng.choice([1, 2, 3], p=[0.55, 0.35, 0.10]) - len(labels)
    count = min(max(count, 0 if labels else 1), len(common))
    labels += list(rng.choice(common, size=count, replace=False))
    return sorted(labels)


def generate(config: SyntheticConfig) -> SyntheticDataset:
    """Render the whole dataset; the same config always gives the same bytes."""
    config.validate()
    size = config.image_size
    rng = np.random.default_rng(config.seed)
    visible = {t.name: set(t.views) for t in config.anomaly_types}
    images: dict[str, np.ndarray] = {}
    annotations, objects, samples = [], [], []

    for s in range(config.n_specimens):
        specimen_id = f"S{s + 1:04d}"
        textures = [_texture(rng, size, v) for v in range(len(config.views))]
        base_level = rng.uniform(95, 130)
        for condition in config.conditions:
            labels = _draw_labels(rng, config)
            shapes = {name: RENDERERS[name](rng, size) for name in labels}
            lighting = _lighting(rng, size)
            gain = 1 + 0.15 * config.conditions.index(condition) / max(len(config.conditions), 1)
            missing = (
                rng.choice(config.views) if rng.random() < config.missing_view_fraction else None
            )
            for v, view in enumerate(config.views):
                noise = rng.normal(0, 3.0, (size, size))
                if view == missing:
                    continue
                signal = 18 * textures[v]
                for name, (intensity, _) in shapes.items():
                    if view in visible[name]:
                        signal = signal + 110 * intensity
                pixels = (base_level + signal) * lighting * gain + noise
                image_id = f"{view}/{specimen_id}_{condition}"
                images[image_id] = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
                for name, (_, mask) in shapes.items():
                    if view not in visible[name]:
                        continue
                    annotations.append((f"{image_id}.png", name, rle.encode(mask)))
                    ys, xs = np.nonzero(mask)
                    objects.append(
                        (
                            f"{image_id}.png",
                            name,
                            xs.min(),
                            ys.min(),
                            xs.max() + 1,
                            ys.max() + 1,
                            int(mask.sum()),
                        )
                    )
            samples.append((specimen_id, condition, ",".join(labels), missing or ""))

    metadata = {
        "generator": "anomaly_lens.ml.data.synthetic",
        "seed": config.seed,
        "image_size": size,
        "views": list(config.views),
        "conditions": list(config.conditions),
        "classes": [t.name for t in config.anomaly_types],
        "visible_in_views": {t.name: list(t.views) for t in config.anomaly_types},
        "rare_class": next((t.name for t in config.anomaly_types if t.rare), None),
        "filename_pattern": r"(?P<view>[^/]+)/(?P<specimen_id>S\d+)_(?P<condition>[^/.]+)",
        "group_column": "specimen_id",
        "n_samples": len(samples),
        "n_images": len(images),
        "rle": "Severstal: 1-based starts, column-major (top-to-bottom, then left-to-right)",
        "box_convention": "x0, y0 inclusive; x1, y1 exclusive (pixels)",
    }
    return SyntheticDataset(
        images=images,
        annotations=pd.DataFrame(annotations, columns=["ImageId", "ClassId", "EncodedPixels"]),
        objects=pd.DataFrame(
            objects, columns=["ImageId", "ClassId", "x0", "y0", "x1", "y1", "pixel_count"]
        ),
        metadata=metadata,
    )
