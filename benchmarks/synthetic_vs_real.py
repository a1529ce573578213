"""How far the generated demo images are from a folder of real ones: KID and FID on the
frozen ImageNet features the drift check uses (``ml.evaluation.drift``), read as models
read images (grey squares, ``view_pixels``). A distance means little alone, so the same
measure is given for two halves of the real folder and for the demo drawn with two seeds:
the spread within each kind of image, against which the gap between them reads. Every
pair compares sets of the same size. The folder is only read. Run from the project root:

    .venv/bin/python benchmarks/synthetic_vs_real.py ../shared/datasets/magnetic_tile \
        [--pattern '**/*.jpg'] [--images 150] [--image-size 128] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from anomaly_lens.ml.data.cache import view_pixels
from anomaly_lens.ml.data.synthetic import SyntheticConfig, generate
from anomaly_lens.ml.evaluation.baseline import pretrained_features
from anomaly_lens.ml.evaluation.drift import distances


def real_images(folder: Path, pattern: str, count: int, size: int, seed: int) -> np.ndarray:
    """A seeded draw of ``count`` images of the folder, as grey squares."""
    paths = sorted(folder.glob(pattern))
    if len(paths) < count:
        raise SystemExit(f"{folder} has {len(paths)} files matching {pattern}, {count} needed")
    chosen = np.random.default_rng(seed).choice(len(paths), count, replace=False)
    return np.stack([view_pixels(paths[k].read_bytes(), size)[0] for k in sorted(chosen)])


def demo_images(count: int, size: int, seed: int) -> np.ndarray:
    """A seeded draw of ``count`` generated demo photos (every view) at ``size``."""
    found = generate(SyntheticConfig(seed=seed, image_size=size)).images
    ids = sorted(found)
    chosen = np.random.default_rng(seed).choice(len(ids), count, replace=False)
    return np.stack([found[ids[k]] for k in sorted(chosen)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--pattern", default="**/*.jpg")
    parser.add_argument("--images", type=int, default=150, help="per set")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    n, size = args.images, args.image_size
    real = real_images(args.folder, args.pattern, 2 * n, size, args.seed)
    real = real[np.random.default_rng(args.seed).permutation(len(real))]
    demo = [demo_images(n, size, args.seed + k) for k in (1, 2)]
    features = {
        name: pretrained_features(images, args.backbone)
        for name, images in {
            "real_a": real[:n],
            "real_b": real[n:],
            "demo_a": demo[0],
            "demo_b": demo[1],
        }.items()
    }
    report = {
        "folder": str(args.folder),
        "pattern": args.pattern,
        "images_per_set": n,
        "image_size": size,
        "backbone": args.backbone,
        "demo_vs_real": distances(features["demo_a"], features["real_a"], args.seed),
        "real_vs_real": distances(features["real_a"], features["real_b"], args.seed),
        "demo_vs_demo": distances(features["demo_a"], features["demo_b"], args.seed),
    }
    gap = report["demo_vs_real"]["kid"]
    report["kid_ratio_to_real_spread"] = gap / max(report["real_vs_real"]["kid"], 1e-12)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
