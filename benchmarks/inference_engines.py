"""Inference throughput: eager PyTorch against onnxruntime (and optionally torch.compile).

The same ``ProbabilityModel`` (resize, model, temperature, sigmoid/softmax), the same batch
of random images, timed in one run; prints images/s of each engine and the ratio of
onnxruntime to eager (goal >= 1.5 on CPU). An image is one view: a two-view sample counts
as two images. Run from the project root:

    .venv/bin/python benchmarks/inference_engines.py [--backbone resnet18] [--views 2]
        [--image-size 64] [--batch 32] [--repeats 20] [--compile]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from anomaly_lens.ml.models import ModelConfig, create_model
from anomaly_lens.ml.serving.onnx_graph import (
    ProbabilityModel,
    export_onnx,
    onnx_probabilities,
    onnx_session,
)


def probability_model(backbone: str, views: int, image_size: int) -> ProbabilityModel:
    config = ModelConfig(
        num_classes=4, views=[f"v{k}" for k in range(views)], backbone=backbone, cbam_stages=[]
    )
    return ProbabilityModel(create_model(config), image_size)


def images_per_second(predict: Callable[[], object], images: int, repeats: int) -> float:
    """Images over wall time of ``repeats`` calls, after two warm-up calls."""
    for _ in range(2):
        predict()
    start = time.perf_counter()
    for _ in range(repeats):
        predict()
    return images * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = probability_model(args.backbone, args.views, args.image_size)
    size = args.image_size
    images = torch.rand(args.batch, args.views, 1, size, size)
    view_mask = torch.ones(args.batch, args.views, dtype=torch.bool)
    session = onnx_session(export_onnx(model, images, view_mask))
    n = args.batch * args.views
    with torch.inference_mode():
        eager = images_per_second(lambda: model(images, view_mask), n, args.repeats)
        compiled = None
        if args.compile:
            fast = torch.compile(model)
            compiled = images_per_second(lambda: fast(images, view_mask), n, args.repeats)
    arrays = images.numpy(), view_mask.numpy()
    onnx = images_per_second(lambda: onnx_probabilities(session, *arrays), n, args.repeats)
    print(
        f"device: cpu, threads: {torch.get_num_threads()}, {args.backbone}, {args.views} views, "
        f"{size}px, batch {args.batch}, {args.repeats} timed batches"
    )
    print(f"eager PyTorch : {eager:8.1f} images/s")
    if compiled is not None:
        print(f"torch.compile : {compiled:8.1f} images/s  ({compiled / eager:.2f}x eager)")
    print(f"onnxruntime   : {onnx:8.1f} images/s  ({onnx / eager:.2f}x eager, goal >= 1.5)")


if __name__ == "__main__":
    main()
