"""Run-length encoding of binary masks in the Severstal convention.

A mask is flattened **column-major** (top to bottom, then left to right) and written as
space-separated ``start length`` pairs, where ``start`` is **1-based**. An empty mask is
the empty string. Example: in a 3x3 mask whose middle column is set, the pixels are
numbered 1..9 down the columns, so the encoding is ``"4 3"``.
"""

from __future__ import annotations

import numpy as np


class RLEError(ValueError):
    """An encoding that is malformed or does not fit the image it describes."""


def encode(mask: np.ndarray) -> str:
    """Encode a 2-D boolean mask as Severstal RLE."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    return " ".join(f"{s + 1} {e - s}" for s, e in zip(starts, ends, strict=True))


def decode(encoded: str | float | None, height: int, width: int) -> np.ndarray:
    """Decode Severstal RLE into a ``(height, width)`` boolean mask.

    Raises ``RLEError`` when the text is not integer pairs or a run leaves the image.
    """
    mask = np.zeros(height * width, dtype=bool)
    if encoded is None or (isinstance(encoded, float) and np.isnan(encoded)):
        return mask.reshape((height, width), order="F")
    tokens = str(encoded).split()
    if len(tokens) % 2:
        raise RLEError(f"odd number of values ({len(tokens)}): expected start/length pairs")
    try:
        values = np.asarray(tokens, dtype=np.int64).reshape(-1, 2)
    except ValueError as err:
        raise RLEError(f"non-integer value in encoding: {err}") from None
    starts, lengths = values[:, 0], values[:, 1]
    if (starts < 1).any() or (lengths < 1).any():
        raise RLEError("starts must be >= 1 and lengths >= 1")
    ends = starts - 1 + lengths
    if (ends > height * width).any():
        worst = int(ends.max())
        raise RLEError(f"run ends at pixel {worst}, outside a {height}x{width} image")
    for start, end in zip(starts - 1, ends, strict=True):
        mask[start:end] = True
    return mask.reshape((height, width), order="F")
