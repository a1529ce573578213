"""Bounding boxes from binary masks: connected components, fragment merging, speck removal."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Component:
    """One object of a mask: box (``x0, y0`` inclusive, ``x1, y1`` exclusive) and pixels."""

    x0: int
    y0: int
    x1: int
    y1: int
    pixel_count: int

    @property
    def area(self) -> int:
        return (self.x1 - self.x0) * (self.y1 - self.y0)


def _merge_labels(labels: np.ndarray, count: int, merge_distance: int) -> np.ndarray:
    """Relabel so components within ``merge_distance`` (chessboard pixels) share a label.

    Two fragments join when the nearest pixels of the two are at most ``merge_distance``
    apart (8-connected neighbours are 1 apart); joining is transitive.
    """
    parent = list(range(count + 1))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(1, count + 1):
        distance = ndimage.distance_transform_cdt(labels != i, metric="chessboard")
        near = np.unique(labels[(distance <= merge_distance) & (labels > i)])
        for j in near:
            parent[find(int(j))] = find(i)
    roots = np.array([find(i) for i in range(count + 1)])
    return roots[labels]


def find_components(
    mask: np.ndarray, min_area: int = 0, merge_distance: int = 0
) -> tuple[list[Component], int]:
    """Objects of a mask (8-connected), fragments merged, and how many specks were dropped.

    A speck is an object with fewer than ``min_area`` mask pixels.
    """
    labels, count = ndimage.label(np.asarray(mask, dtype=bool), structure=EIGHT_CONNECTED)
    if count and merge_distance > 0:
        labels = _merge_labels(labels, count, merge_distance)
    components, specks = [], 0
    for label in np.unique(labels[labels > 0]):
        ys, xs = np.nonzero(labels == label)
        if len(ys) < min_area:
            specks += 1
            continue
        components.append(
            Component(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, len(ys))
        )
    return components, specks


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (exclusive ends)."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0
