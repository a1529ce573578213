"""Decoding and caching throughput by pixel kind: 8-bit grey, 8-bit colour (PNG and JPEG)
and 16-bit grey, through the function that fills the image cache (``view_pixels``:
decode, scale deeper pixels by their bit depth, to luminance, resize) and through
ingestion's decode alone. Timed in one run; prints images/s of each kind and its ratio to
8-bit grey PNG. Run from the project root:

    .venv/bin/python benchmarks/decoding.py [--side 512] [--image-size 224] [--images 64]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from anomaly_lens.ml.data.cache import view_pixels
from anomaly_lens.ml.data.imaging import decode_image


def encoded_images(kind: str, side: int, count: int, seed: int = 0) -> list[bytes]:
    """``count`` textured images of one kind, encoded as a camera would write them."""
    rng = np.random.default_rng(seed)
    files = []
    for _ in range(count):
        base = rng.random((side, side))
        if kind == "grey16_png":
            image = Image.fromarray((base * 65535).astype(np.uint16))
        elif kind.startswith("rgb"):
            image = Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8))
        else:
            image = Image.fromarray((base * 255).astype(np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG" if kind.endswith("jpeg") else "PNG")
        files.append(buffer.getvalue())
    return files


KINDS = ("grey8_png", "grey16_png", "rgb8_png", "rgb8_jpeg", "grey8_jpeg")


def images_per_second(step: Callable[[bytes], object], files: list[bytes]) -> float:
    step(files[0])  # warm-up
    start = time.perf_counter()
    for content in files:
        step(content)
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args()
    rates = {}
    for kind in KINDS:
        files = encoded_images(kind, args.side, args.images)
        cached = images_per_second(lambda c: view_pixels(c, args.image_size), files)
        decoded = images_per_second(decode_image, files)
        rates[kind] = (cached, decoded)
    grey = rates["grey8_png"][0]
    print(f"{args.side}x{args.side} px -> {args.image_size} px, {args.images} images per kind")
    print(f"{'kind':<12} {'cache img/s':>12} {'decode img/s':>13} {'cache vs grey8_png':>19}")
    for kind, (cached, decoded) in rates.items():
        print(f"{kind:<12} {cached:>12.1f} {decoded:>13.1f} {cached / grey:>19.2f}")


if __name__ == "__main__":
    main()
