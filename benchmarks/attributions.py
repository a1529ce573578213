"""Attribution throughput: batched Captum calls against one image at a time.

Integrated Gradients on the same images and targets, timed in one run, batched
(``--batch`` images per Captum call) and one image per call; prints attributions/s of
each and their ratio (goal >= 1.4), then every method's seconds per image at the batch
size. An image is one sample with all its views. Run from the project root:

    .venv/bin/python benchmarks/attributions.py [--backbone resnet18] [--views 2]
        [--image-size 64] [--images 32] [--batch 16] [--steps 32]
"""

from __future__ import annotations

import argparse

import torch

from anomaly_lens.ml.explanation.attribution import (
    METHODS,
    AttributionSettings,
    ExplainedScores,
    attribute,
)
from anomaly_lens.ml.models import ModelConfig, create_model


def explained_model(backbone: str, views: int) -> ExplainedScores:
    config = ModelConfig(
        num_classes=4, views=[f"v{k}" for k in range(views)], backbone=backbone, cbam_stages=[]
    )
    return ExplainedScores(create_model(config).eval(), "classification")


def seconds_per_image(scores, images, view_mask, targets, method, settings) -> float:
    """One warm-up call on two images, then the whole set."""
    attribute(scores, images[:2], view_mask[:2], targets[:2], method, settings)
    return attribute(scores, images, view_mask, targets, method, settings).seconds_per_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    scores = explained_model(args.backbone, args.views)
    size = args.image_size
    images = torch.rand(args.images, args.views, 1, size, size)
    view_mask = torch.ones(args.images, args.views, dtype=torch.bool)
    targets = torch.randint(0, 4, (args.images,))
    batched = AttributionSettings(n_steps=args.steps, batch_size=args.batch)
    single = batched.model_copy(update={"batch_size": 1})
    ig = "integrated_gradients"
    one_call = seconds_per_image(scores, images, view_mask, targets, ig, batched)
    one_image = seconds_per_image(scores, images, view_mask, targets, ig, single)
    print(
        f"{args.backbone}, {args.views} views at {size} px, {args.images} images, "
        f"IG with {args.steps} steps, torch threads: {torch.get_num_threads()}"
    )
    print(f"IG batched ({args.batch} per call): {1 / one_call:8.1f} attributions/s")
    print(f"IG one image per call:      {1 / one_image:8.1f} attributions/s")
    print(f"ratio batched / one at a time: {one_image / one_call:.2f} (goal >= 1.4)")
    for method in METHODS:
        took = seconds_per_image(scores, images, view_mask, targets, method, batched)
        print(f"{method:22s} {took:8.4f} s per image")


if __name__ == "__main__":
    main()
