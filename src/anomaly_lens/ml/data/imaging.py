"""Image decoding, quality metrics and mask binarisation, with failures named precisely."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

MASK_MODES = ("L", "1", "P")


class ImageProblem(ValueError):
    """A file that cannot serve as an image or mask; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    """Pixels of one decoded file with the facts the manifest records about it."""

    pixels: np.ndarray  # (H, W) uint8 for grayscale, (H, W, C) uint8 otherwise
    mode: str
    width: int
    height: int


@dataclass(frozen=True)
class SizeLimits:
    """How large and how small an image may be; checked from the header, before decoding,
    so a decompression bomb (a huge image in a small file) never reaches memory."""

    max_pixels: int = 40_000_000
    min_side: int = 1


def sha256(content: bytes) -> str:
    """Content hash used to find exact duplicates."""
    return hashlib.sha256(content).hexdigest()


def decode_image(content: bytes, limits: SizeLimits | None = None) -> DecodedImage:
    """Decode an encoded image fully; raise ``ImageProblem`` for empty, broken or cut files,
    and (with ``limits``) for images too large (``too_large``) or too small (``too_small``)."""
    if not content:
        raise ImageProblem("zero_byte", "file is empty")
    try:
        with Image.open(io.BytesIO(content)) as image:
            if limits is not None:
                _check_size(image.size, limits)
            image.load()
            mode = image.mode
            pixels = _eight_bit(image)
    except ImageProblem:
        raise
    except Image.DecompressionBombError as err:  # Pillow's own limit, checked on open
        found = re.search(r"\((\d+) pixels\)", str(err))
        if limits is None or found is None:
            raise ImageProblem("too_large", str(err)) from None
        raise ImageProblem("too_large", f"{found[1]} pixels > {limits.max_pixels}") from None
    except UnidentifiedImageError as err:
        raise ImageProblem("unreadable", str(err)) from None
    except (OSError, SyntaxError, ValueError) as err:
        reason = "truncated" if "truncated" in str(err).lower() else "unreadable"
        raise ImageProblem(reason, str(err)) from None
    if pixels.dtype != np.uint8:
        raise ImageProblem("unreadable", f"unsupported pixel type {pixels.dtype} (mode {mode})")
    height, width = pixels.shape[:2]
    return DecodedImage(pixels=pixels, mode=mode, width=width, height=height)


# How pixels deeper than 8 bits become the 0-255 the models read: by their bit depth, so
# that order is kept and nothing is clipped (Pillow's own conversion clips 16-bit values
# above 255, which would turn almost every pixel white).
PIXEL_SCALING = {
    "16-bit (I;16*, and 32-bit I within 0-65535)": "round(value / 257): 0 -> 0, 65535 -> 255",
    "32-bit float (F) within 0-1": "round(value * 255)",
    "1-bit and palette (1, P)": "Pillow's conversion to grey (L)",
}


def _eight_bit(image: Image.Image) -> np.ndarray:
    """The pixels as uint8 by ``PIXEL_SCALING``; other deep images are refused."""
    mode = image.mode
    if mode in ("1", "P"):
        return np.asarray(image.convert("L"))
    if not (mode.startswith("I") or mode == "F"):
        return np.asarray(image)
    values = np.asarray(image).astype(np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode == "F":
        if low < 0 or high > 1:
            raise ImageProblem("unreadable", f"float pixels in [{low:g}, {high:g}], not 0-1")
        return np.round(values * 255).astype(np.uint8)
    if low < 0 or high > 65535:
        raise ImageProblem("unreadable", f"{mode} pixels in [{low:g}, {high:g}], not 16-bit")
    return np.round(values / 257).astype(np.uint8)


def _check_size(size: tuple[int, int], limits: SizeLimits) -> None:
    width, height = size
    if width * height > limits.max_pixels:
        raise ImageProblem(
            "too_large", f"{width}x{height} = {width * height} pixels > {limits.max_pixels}"
        )
    if min(width, height) < limits.min_side:
        raise ImageProblem("too_small", f"{width}x{height}: a side is under {limits.min_side} px")


def to_gray(pixels: np.ndarray) -> np.ndarray:
    """Luminance of an image as uint8 (grayscale input passes through)."""
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] == 4:
        pixels = pixels[..., :3]
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)


def quality_metrics(pixels: np.ndarray) -> dict[str, float]:
    """Sharpness (variance of the Laplacian), brightness (mean), contrast (std), resolution."""
    gray = to_gray(pixels).astype(np.float32)
    return {
        "sharpness": float(cv2.Laplacian(gray, cv2.CV_32F).var()),
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "resolution": float(gray.shape[0] * gray.shape[1]),
    }


def binarize_mask(
    content: bytes,
    height: int,
    width: int,
    threshold: int = 128,
    strict: bool = False,
    max_pixels: int = SizeLimits.max_pixels,
) -> np.ndarray:
    """Turn an encoded mask file into a boolean mask of the image's size.

    The rule: the mask must be single-channel 8-bit (mode L, 1 or P) and as large as its
    image; a pixel is foreground when its value is >= ``threshold``. Soft (anti-aliased)
    edges are therefore accepted, as in the Magnetic Tile masks. A mask with non-zero
    pixels of which none reaches the threshold is ambiguous and rejected. With
    ``strict=True`` any value other than 0 and 255 is rejected.
    """
    try:
        decoded = decode_image(content, SizeLimits(max_pixels=max_pixels))
    except ImageProblem as err:
        raise ImageProblem(f"mask_{err.reason}", err.detail) from None
    if decoded.mode not in MASK_MODES:
        raise ImageProblem("mask_values", f"mask mode {decoded.mode} is not single-channel 8-bit")
    if (decoded.height, decoded.width) != (height, width):
        raise ImageProblem(
            "mask_size_mismatch",
            f"mask is {decoded.width}x{decoded.height}, image is {width}x{height}",
        )
    values = decoded.pixels
    if decoded.mode == "1":
        return values > 0
    if strict:
        other = np.setdiff1d(np.unique(values), [0, 255])
        if other.size:
            raise ImageProblem("mask_values", f"values other than 0/255: {other[:5].tolist()}")
    foreground = values >= threshold
    if values.any() and not foreground.any():
        raise ImageProblem(
            "mask_values", f"non-zero mask with no value >= {threshold} (max {int(values.max())})"
        )
    return foreground


def encode_png(pixels: np.ndarray) -> bytes:
    """Losslessly encode uint8 pixels as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def difference_hash(pixels: np.ndarray, size: int = 16) -> str:
    """Perceptual difference hash (``size``² bits, hex): near-identical images differ in few bits.

    Each bit says whether a pixel of the ``size`` x ``size+1`` thumbnail is brighter than
    its left neighbour; re-captures of one object under similar light stay within a few
    bits, unrelated images differ in about half of them.
    """
    thumb = cv2.resize(to_gray(pixels), (size + 1, size), interpolation=cv2.INTER_AREA)
    bits = (thumb[:, 1:] > thumb[:, :-1]).ravel()
    return np.packbits(bits).tobytes().hex()


def hamming_pairs(hashes: list[str], max_bits: int, chunk: int = 512) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of hex hashes that differ in at most ``max_bits``."""
    if not hashes:
        return []
    packed = np.array([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes])
    popcount = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1)
    pairs = []
    for start in range(0, len(packed), chunk):
        block = packed[start : start + chunk]
        distance = popcount[block[:, None, :] ^ packed[None, :, :]].sum(-1)
        for i, j in zip(*np.nonzero(distance <= max_bits), strict=True):
            if start + i < j:
                pairs.append((int(start + i), int(j)))
    return pairs
