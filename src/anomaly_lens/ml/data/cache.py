"""Training data: a decode-once image cache, a multi-view torch Dataset and its transforms.

The cache holds every sample's views decoded and resized once, as uint8, with per-view,
per-class masks, each view's original size and multi-hot labels. Epochs and later runs read
the arrays; a fingerprint of the inputs tells when the cache no longer matches them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler
from tqdm.auto import tqdm

from anomaly_lens.ml.data import imaging, rle
from anomaly_lens.ml.data.batch import Batch

AUGMENTATION_PRESETS = ("none", "light", "medium", "heavy")


@dataclass
class ImageCache:
    """Decoded, resized samples: arrays indexed by sample position."""

    sample_ids: np.ndarray  # (N,) str
    images: np.ndarray  # (N, V, S, S) uint8
    view_mask: np.ndarray  # (N, V) bool
    labels: np.ndarray  # (N, K) uint8 multi-hot
    masks: np.ndarray  # (N, V, K, S, S) uint8 0/1, each view's own masks
    view_shapes: np.ndarray  # (N, V, 2) int32 (height, width) before resizing; 0 if missing
    views: list[str]
    classes: list[str]
    fingerprint: str

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything as arrays (for ``np.savez``); ``from_arrays`` reverses it."""
        meta = json.dumps(
            {"views": self.views, "classes": self.classes, "fingerprint": self.fingerprint}
        )
        return {
            "sample_ids": self.sample_ids.astype(str),
            "images": self.images,
            "view_mask": self.view_mask,
            "labels": self.labels,
            "masks": self.masks,
            "view_shapes": self.view_shapes,
            "meta": np.array(meta),
        }

    @classmethod
    def from_arrays(cls, arrays) -> ImageCache:
        missing = {"images", "masks", "view_shapes", "meta"} - set(arrays)
        if missing:
            raise ValueError(
                f"The image cache lacks {sorted(missing)} (written by an older version): "
                "run the `train` pipeline from its start to rebuild it"
            )
        meta = json.loads(str(arrays["meta"]))
        return cls(
            sample_ids=np.asarray(arrays["sample_ids"]),
            images=np.asarray(arrays["images"]),
            view_mask=np.asarray(arrays["view_mask"]),
            labels=np.asarray(arrays["labels"]),
            masks=np.asarray(arrays["masks"]),
            view_shapes=np.asarray(arrays["view_shapes"]),
            **meta,
        )

    def positions(self, sample_ids: Sequence[str]) -> np.ndarray:
        """Cache positions of the given samples, in their order."""
        index = {s: i for i, s in enumerate(self.sample_ids)}
        missing = [s for s in sample_ids if s not in index]
        if missing:
            raise KeyError(f"{len(missing)} samples are not in the image cache, e.g. {missing[:3]}")
        return np.array([index[s] for s in sample_ids], dtype=np.int64)

    def unregistered(self, view_index: Sequence[int]) -> np.ndarray:
        """Samples whose present views (of ``view_index``) had different sizes before resizing.

        Pixels of such views do not correspond, so one mask cannot serve them all.
        """
        shapes = self.view_shapes[:, view_index]
        present = self.view_mask[:, view_index]
        first = shapes[np.arange(len(shapes)), present.argmax(1)]
        differs = (shapes != first[:, None]).any(-1) & present
        return np.flatnonzero(differs.any(1))


def cache_fingerprint(
    samples: pd.DataFrame,
    manifest: pd.DataFrame,
    views: Sequence[str],
    classes: Sequence[str],
    image_size: int,
    resize: str = "stretch",
) -> str:
    """Hash of what the cache is made of: sample ids, image contents, views, classes, size
    (and how images reach it, where not stretched: caches made before keep their hash)."""
    digest = manifest.set_index("image_id")["sha256"]
    how = [] if resize == "stretch" else [resize]
    parts = [json.dumps([list(views), list(classes), image_size, *how])]
    for row in samples[["sample_id", *[f"image_{v}" for v in views]]].itertuples(index=False):
        parts.append(row[0] + ":" + ",".join("-" if pd.isna(i) else digest[i] for i in row[1:]))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# How an image becomes the model's square: ``stretch`` resizes it to the square (a 2:1
# photo is squashed); ``pad`` keeps its aspect ratio, fits its longer side and fills the
# rest with zeros (masks alike), and predictions are mapped back through the same box.
RESIZE_MODES = ("stretch", "pad")


def content_box(height: int, width: int, size: int, resize: str) -> tuple[int, int, int, int]:
    """(top, left, rows, columns) an image of ``height`` x ``width`` fills in the square."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, not {resize!r}")
    if resize == "stretch":
        return 0, 0, size, size
    scale = size / max(height, width)
    rows, columns = max(1, round(height * scale)), max(1, round(width * scale))
    return (size - rows) // 2, (size - columns) // 2, rows, columns


def to_square(pixels: np.ndarray, size: int, interpolation: int, resize: str) -> np.ndarray:
    """An image or mask as the model's ``size`` x ``size`` square (``RESIZE_MODES``)."""
    top, left, rows, columns = content_box(*pixels.shape[:2], size, resize)
    square = np.zeros((size, size), dtype=pixels.dtype)
    fitted = cv2.resize(pixels, (columns, rows), interpolation=interpolation)
    square[top : top + rows, left : left + columns] = fitted
    return square


def from_square(square: np.ndarray, height: int, width: int, resize: str) -> np.ndarray:
    """A mask of the model's square back at the original image's pixels (nearest)."""
    top, left, rows, columns = content_box(height, width, square.shape[0], resize)
    inside = square[top : top + rows, left : left + columns]
    return cv2.resize(inside, (width, height), interpolation=cv2.INTER_NEAREST)


SIZE_STEP = 32  # the encoders' overall stride: a square of a multiple of it tiles evenly


def chosen_image_size(image_size: int | str, manifest: pd.DataFrame, cap: int) -> int:
    """The square the images are read into: ``image_size`` as given, or for ``auto`` the
    images' median shorter side (what most of them hold without upsampling) rounded down
    to a multiple of ``SIZE_STEP``, between ``SIZE_STEP`` and ``cap`` (the compute bound,
    e.g. the backbone's native size). Sizes are what the camera writes, not outcomes, so
    every image of the manifest counts."""
    if image_size != "auto":
        return int(image_size)
    if manifest.empty:
        raise ValueError("train.image_size=auto reads the images' sizes: the manifest is empty")
    shorter = float(manifest[["width", "height"]].min(axis=1).median())
    return int(min(cap, max(SIZE_STEP, shorter // SIZE_STEP * SIZE_STEP)))


def view_pixels(
    content: bytes, image_size: int, resize: str = "stretch"
) -> tuple[np.ndarray, tuple[int, int]]:
    """One encoded view as models read it: grey, resized (area) into a square of
    ``image_size`` (``to_square``); and its original (height, width)."""
    pixels = imaging.to_gray(imaging.decode_image(content).pixels)
    return to_square(pixels, image_size, cv2.INTER_AREA, resize), pixels.shape[:2]


def build_image_cache(
    samples: pd.DataFrame,
    manifest: pd.DataFrame,
    masks: pd.DataFrame,
    load_image: Callable[[str], bytes],
    *,
    views: Sequence[str],
    classes: Sequence[str],
    image_size: int,
    resize: str = "stretch",
) -> ImageCache:
    """Decode every view of every sample once, as grayscale in a square of ``image_size``
    (``resize``: stretched, or padded to keep the aspect ratio).

    ``load_image`` returns the bytes of a manifest ``partition_id``. Masks are decoded
    from RLE at the image's size and resized with nearest neighbours, per view.
    """
    info = manifest.set_index("image_id")
    rle_of = masks.set_index(["image_id", "class"])["encoded_pixels"]
    class_index = {c: k for k, c in enumerate(classes)}
    n, v, k = len(samples), len(views), len(classes)
    images = np.zeros((n, v, image_size, image_size), dtype=np.uint8)
    view_mask = np.zeros((n, v), dtype=bool)
    view_shapes = np.zeros((n, v, 2), dtype=np.int32)
    pixel_masks = np.zeros((n, v, k, image_size, image_size), dtype=np.uint8)
    labels = samples[[f"label_{c}" for c in classes]].to_numpy(dtype=np.uint8)
    rows = samples.itertuples(index=False)
    progress = tqdm(rows, total=n, desc="Caching images", unit="sample", disable=None)
    for i, row in enumerate(progress):
        for j, view in enumerate(views):
            image_id = getattr(row, f"image_{view}")
            if pd.isna(image_id):
                continue
            content = load_image(info.at[image_id, "partition_id"])
            images[i, j], (height, width) = view_pixels(content, image_size, resize)
            view_shapes[i, j] = height, width
            view_mask[i, j] = True
            for cls in info.at[image_id, "labels"]:
                if cls in class_index and (image_id, cls) in rle_of.index:
                    full = rle.decode(rle_of.at[(image_id, cls)], height, width).astype(np.uint8)
                    pixel_masks[i, j, class_index[cls]] = to_square(
                        full, image_size, cv2.INTER_NEAREST, resize
                    )
    return ImageCache(
        sample_ids=samples["sample_id"].to_numpy(dtype=str),
        images=images,
        view_mask=view_mask,
        labels=labels,
        masks=pixel_masks,
        view_shapes=view_shapes,
        views=list(views),
        classes=list(classes),
        fingerprint=cache_fingerprint(samples, manifest, views, classes, image_size, resize),
    )


def augmentation(
    preset: str,
    n_views: int,
    clahe: bool = False,
    seed: int | None = None,
    rotate90: bool = False,
) -> A.Compose:
    """An albumentations pipeline applying the same random geometry to every view and mask;
    ``rotate90`` adds a random quarter turn (views are square in the image cache)."""
    if preset not in AUGMENTATION_PRESETS:
        raise ValueError(
            f"augmentation preset must be one of {AUGMENTATION_PRESETS}, not {preset!r}"
        )
    steps: list[A.BasicTransform] = [A.CLAHE(clip_limit=2.0, p=1.0)] if clahe else []
    if preset in ("light", "medium", "heavy"):
        steps += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if rotate90:
        steps.append(A.RandomRotate90(p=1.0))
    if preset in ("medium", "heavy"):
        steps += [
            A.Affine(translate_percent=(-0.06, 0.06), scale=(0.9, 1.1), rotate=(-15, 15), p=0.7),
            A.RandomBrightnessContrast(0.15, 0.15, p=0.5),
        ]
    if preset == "heavy":
        steps += [
            A.GaussNoise(std_range=(0.02, 0.06), p=0.4),
            A.GridDistortion(p=0.3),
            A.CoarseDropout(
                num_holes_range=(1, 4),
                hole_height_range=(0.05, 0.12),
                hole_width_range=(0.05, 0.12),
                p=0.3,
            ),
        ]
    targets = {f"view_{j}": "image" for j in range(1, n_views)}
    return A.Compose(steps, additional_targets=targets, seed=seed)


def reseed(transform: A.Compose, seed: int) -> None:
    """Give the pipeline and each of its steps its own seed derived from ``seed``.

    (``Compose.set_random_seed`` hands every step the same seed, so their first random
    draws coincide and the steps fire together or not at all.)
    """
    states = np.random.SeedSequence(seed).generate_state(len(transform.transforms) + 1)
    transform.set_random_seed(int(states[0]))
    for step, state in zip(transform.transforms, states[1:], strict=True):
        step.set_random_seed(int(state))


class EpochSampler(Sampler):
    """Shuffled (or, with ``weights``, weighted) order drawn from ``(seed, epoch)`` alone.

    Yields ``(index, epoch)`` keys so the dataset can seed its own randomness per item:
    an epoch then looks the same whether or not training was interrupted before it.
    Lightning calls ``set_epoch`` before every epoch.
    """

    def __init__(self, size: int, seed: int, weights: np.ndarray | None = None):
        self.size, self.seed, self.epoch = size, seed, 0
        self.weights = None if weights is None else np.asarray(weights, float) / np.sum(weights)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        if self.weights is None:
            order = rng.permutation(self.size)
        else:
            order = rng.choice(self.size, self.size, p=self.weights)
        return iter([(int(i), self.epoch) for i in order])


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Sample weights so rare classes (and normal samples) come up about as often as common ones.

    A sample's weight is the inverse frequency of its rarest label ("normal" counts as a label).
    """
    with_normal = np.column_stack([labels, labels.sum(1) == 0]).astype(bool)
    inverse = 1.0 / with_normal.sum(0).clip(min=1)
    return np.where(with_normal, inverse, 0).max(1)


class MultiViewDataset(Dataset):
    """Samples of an ``ImageCache`` as tensors; views and masks augmented together.

    ``view_index`` selects and orders views (a single-view model on a multi-view cache);
    samples with none of them present are left out and listed in ``without_views``.
    ``per_view``: every present view becomes an item of its own, a one-view sample with
    its sample's labels and its own masks; otherwise an item is a sample and its masks
    are the union of its present views' (meaningful for registered views).
    ``modality_dropout``: in training, each present view is dropped with this
    probability, never the last one present. ``targets`` (one row per cache position)
    replace the cache's multi-hot labels, e.g. one-hot with a normal class.
    Indexed by item, or by the ``(item, epoch)`` keys of ``EpochSampler``;
    random choices are seeded by ``(seed, epoch, item)``.
    """

    def __init__(
        self,
        cache: ImageCache,
        positions: Sequence[int],
        transform: A.Compose | None = None,
        modality_dropout: float = 0.0,
        seed: int = 0,
        targets: np.ndarray | None = None,
        view_index: Sequence[int] | None = None,
        per_view: bool = False,
    ):
        self.cache, self.transform = cache, transform
        self.modality_dropout, self.seed, self.per_view = modality_dropout, seed, per_view
        self.targets = (
            cache.labels.astype(np.float32) if targets is None else targets.astype(np.float32)
        )
        view_index = list(range(len(cache.views))) if view_index is None else list(view_index)
        self.items = (
            [(int(i), [j]) for i in positions for j in view_index if cache.view_mask[i, j]]
            if per_view
            else [(int(i), view_index) for i in positions if cache.view_mask[i, view_index].any()]
        )
        self.positions = np.array([i for i, _ in self.items], dtype=np.int64)
        self.without_views = sorted(
            str(cache.sample_ids[i]) for i in set(map(int, positions)) - set(self.positions)
        )

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: Sequence[int]) -> MultiViewDataset:
        """The same dataset restricted to the items at ``indices`` (e.g. one fold)."""
        part = copy.copy(self)
        part.items = [self.items[i] for i in indices]
        part.positions = self.positions[np.asarray(indices, dtype=np.int64)]
        part.without_views = []
        return part

    def item_id(self, item: int) -> str:
        """The sample id, with ``/view`` appended for per-view items."""
        i, views = self.items[item]
        sample = str(self.cache.sample_ids[i])
        return f"{sample}/{self.cache.views[views[0]]}" if self.per_view else sample

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        item, epoch = key if isinstance(key, tuple) else (key, 0)
        rng = np.random.default_rng((self.seed, epoch, int(item)))
        i, view_index = self.items[item]
        views = self.cache.images[i][view_index]
        present = self.cache.view_mask[i][view_index].copy()
        masks = self.cache.masks[i][view_index][present].max(0, initial=0)
        if self.transform is not None:
            reseed(self.transform, int(rng.integers(2**31)))
            out = self.transform(
                image=views[0],
                masks=list(masks),
                **{f"view_{j}": views[j] for j in range(1, len(views))},
            )
            views = np.stack([out["image"]] + [out[f"view_{j}"] for j in range(1, len(views))])
            masks = np.stack(out["masks"]) if len(masks) else masks
        if self.modality_dropout > 0 and present.sum() > 1:
            for j in rng.permutation(np.flatnonzero(present)):
                if present.sum() > 1 and rng.random() < self.modality_dropout:
                    present[j] = False
        images = torch.from_numpy(np.ascontiguousarray(views)).float().div_(255.0).unsqueeze(1)
        images = images * torch.from_numpy(present).view(-1, 1, 1, 1)
        return {
            "images": images,
            "view_mask": torch.from_numpy(present),
            "labels": torch.from_numpy(self.targets[i]),
            "masks": torch.from_numpy(np.ascontiguousarray(masks).astype(np.float32)),
            "sample_id": self.item_id(item),
        }


def collate(items: list[dict]) -> Batch:
    """Stack dataset items into a ``Batch``."""
    return Batch(
        images=torch.stack([x["images"] for x in items]),
        view_mask=torch.stack([x["view_mask"] for x in items]),
        labels=torch.stack([x["labels"] for x in items]),
        masks=torch.stack([x["masks"] for x in items]),
        sample_ids=[x["sample_id"] for x in items],
    )
