"""Train-loop throughput: the `train` node's Lightning loop against a bare PyTorch loop.

Same model, batch size, cached data and number of steps; prints samples/s of both, their
ratio (goal >= 0.9), and the share of the Lightning loop's step time spent waiting for
data (goal <= 10 %). Run from the project root:

    .venv/bin/python benchmarks/train_loop.py [--steps 40] [--image-size 64] [--channels-last]
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from anomaly_lens.ml.data import synthetic
from anomaly_lens.ml.data.cache import (
    EpochSampler,
    ImageCache,
    MultiViewDataset,
    augmentation,
    collate,
)
from anomaly_lens.ml.models import ModelConfig
from anomaly_lens.ml.training.module import TrainingModule
from anomaly_lens.ml.training.settings import LossSettings, OptimizerSettings

MODEL = ModelConfig(num_classes=4, views=["co2", "ch4"], backbone="resnet18", fusion="late")
LOSS = LossSettings(classification="bce", segmentation="dice")
OPTIMIZER = OptimizerSettings(lr=1e-3, weight_decay=1e-4, warmup_fraction=0.05)


def synthetic_cache(size: int, n_specimens: int = 150) -> ImageCache:
    """Cached arrays of the default synthetic dataset (labels only; masks unused here)."""
    config = synthetic.SyntheticConfig(image_size=size, n_specimens=n_specimens)
    data = synthetic.generate(config)
    samples = sorted({k.split("/", 1)[1] for k in data.images})
    views = ["co2", "ch4"]
    images = np.zeros((len(samples), 2, size, size), np.uint8)
    present = np.zeros((len(samples), 2), bool)
    for i, s in enumerate(samples):
        for j, v in enumerate(views):
            if f"{v}/{s}" in data.images:
                images[i, j], present[i, j] = data.images[f"{v}/{s}"], True
    classes = ["plume", "streak", "hotspot", "crack"]
    return ImageCache(
        sample_ids=np.array(samples),
        images=images,
        view_mask=present,
        labels=np.zeros((len(samples), len(classes)), np.uint8),
        masks=np.zeros((len(samples), len(views), len(classes), size, size), np.uint8),
        view_shapes=np.where(present[..., None], size, 0),
        views=views,
        classes=classes,
        fingerprint="",
    )


def loader(cache: ImageCache, batch: int) -> DataLoader:
    dataset = MultiViewDataset(
        cache, np.arange(len(cache.sample_ids)), augmentation("light", 2, seed=0)
    )
    return DataLoader(
        dataset, batch_size=batch, sampler=EpochSampler(len(dataset), 0), collate_fn=collate
    )


class Timing(L.Callback):
    """Wall time of each training step and of the data fetch before it."""

    def __init__(self, skip: int):
        self.skip, self.steps, self.waits = skip, [], []
        self._end = None

    def on_train_batch_start(self, trainer, module, batch, index):
        self._start = time.perf_counter()
        if self._end is not None and index >= self.skip:
            self.waits.append(self._start - self._end)

    def on_train_batch_end(self, trainer, module, outputs, batch, index):
        self._end = time.perf_counter()
        if index >= self.skip:
            self.steps.append(self._end - self._start)


def lightning_loop(cache, batch, steps, warmup, channels_last):
    module = TrainingModule(MODEL, LOSS, OPTIMIZER, [0.5] * 4, channels_last=channels_last)
    timing = Timing(warmup)
    trainer = L.Trainer(
        max_steps=steps + warmup,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timing],
        num_sanity_val_steps=0,
        limit_val_batches=0,
        gradient_clip_val=1.0,
    )
    trainer.fit(module, loader(cache, batch))
    total = sum(timing.steps) + sum(timing.waits)
    return batch * len(timing.steps) / total, sum(timing.waits) / total


def bare_loop(cache, batch, steps, warmup, channels_last):
    module = TrainingModule(MODEL, LOSS, OPTIMIZER, [0.5] * 4, channels_last=channels_last)
    model, criterion = module.model.train(), module.criterion
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    done, start = 0, None
    while done < steps + warmup:
        for batch_ in loader(cache, batch):
            if done == warmup:
                start = time.perf_counter()
            loss = criterion(model(batch_.images, batch_.view_mask), batch_)["loss"]
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            done += 1
            if done == steps + warmup:
                break
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    cache = synthetic_cache(args.image_size)
    bare = bare_loop(cache, args.batch, args.steps, args.warmup, args.channels_last)
    ours, waiting = lightning_loop(cache, args.batch, args.steps, args.warmup, args.channels_last)
    print(
        f"device: cpu, threads: {torch.get_num_threads()}, batch {args.batch}, "
        f"{args.image_size}px, {args.steps} timed steps, channels_last={args.channels_last}"
    )
    print(f"bare PyTorch loop : {bare:8.1f} samples/s")
    print(f"train node loop   : {ours:8.1f} samples/s")
    print(f"ratio             : {ours / bare:8.2f}  (goal >= 0.9)")
    print(f"waiting for data  : {waiting:8.1%}  of step time (goal <= 10 %)")


if __name__ == "__main__":
    main()
