import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from anomaly_lens.ml.data.cache import (
    EpochSampler,
    ImageCache,
    MultiViewDataset,
    augmentation,
    balanced_weights,
    build_image_cache,
    cache_fingerprint,
    chosen_image_size,
    collate,
    content_box,
    from_square,
    to_square,
)
from anomaly_lens.ml.evaluation.predictions import per_photo_table, prediction_table
from anomaly_lens.ml.training.datasets import build_datasets
from anomaly_lens.ml.training.settings import AugmentationSettings


def test_cache_holds_every_sample_decoded_once(prepared, cache):
    samples, manifest, masks, raw, classes = prepared
    assert cache.images.shape == (len(samples), 2, 32, 32) and cache.images.dtype == np.uint8
    assert cache.view_mask.sum() == len(manifest)
    assert cache.labels.tolist() == samples[[f"label_{c}" for c in classes]].to_numpy().tolist()
    # each view keeps its own masks; a class has a mask in some view exactly when the
    # sample carries that label
    assert cache.masks.shape == (len(samples), 2, len(classes), 32, 32)
    in_any_view = cache.masks.max(1).reshape(len(samples), len(classes), -1).max(-1)
    assert ((in_any_view > 0) == (cache.labels > 0)).all()
    assert (cache.view_shapes[cache.view_mask] == 32).all()
    assert (cache.view_shapes[~cache.view_mask] == 0).all()
    calls = []
    build_image_cache(
        samples,
        manifest,
        masks,
        lambda p: calls.append(p) or raw[p],
        views=["co2", "ch4"],
        classes=classes,
        image_size=32,
    )
    assert sorted(calls) == sorted(manifest["partition_id"])  # each image decoded once


def test_cache_round_trips_through_arrays_and_fingerprint_tracks_inputs(prepared, cache):
    samples, manifest, *_, classes = prepared
    again = ImageCache.from_arrays(cache.arrays())
    assert np.array_equal(again.images, cache.images) and again.classes == cache.classes
    assert again.fingerprint == cache_fingerprint(samples, manifest, ["co2", "ch4"], classes, 32)
    assert cache_fingerprint(samples, manifest, ["co2", "ch4"], classes, 64) != cache.fingerprint
    changed = manifest.assign(sha256=manifest["sha256"].where(manifest.index > 0, "0" * 64))
    assert cache_fingerprint(samples, changed, ["co2", "ch4"], classes, 32) != cache.fingerprint
    with pytest.raises(KeyError, match="not in the image cache"):
        cache.positions(["nope"])


def _two_view_sample(image: np.ndarray, mask: np.ndarray) -> ImageCache:
    """A cache of one sample whose two views are ``image``, each with ``mask``."""
    return ImageCache(
        sample_ids=np.array(["s"]),
        images=np.stack([image, image])[None],
        view_mask=np.ones((1, 2), bool),
        labels=np.ones((1, 1), np.uint8),
        masks=np.stack([mask] * 2).astype(np.uint8)[None, :, None],
        view_shapes=np.full((1, 2, 2), image.shape[0]),
        views=["a", "b"],
        classes=["x"],
        fingerprint="",
    )


def test_augmentation_moves_views_and_masks_together():
    image = np.full((32, 32), 40, dtype=np.uint8)
    image[4:12, 6:20] = 250  # a bright, off-centre, asymmetric block marked by the mask
    cache = _two_view_sample(image, image > 200)
    dataset = MultiViewDataset(cache, np.array([0]), augmentation("heavy", n_views=2, seed=3))
    moved = 0
    for epoch in range(10):
        item = dataset[(0, epoch)]
        first, second, mask = item["images"][0, 0], item["images"][1, 0], item["masks"][0] > 0
        assert torch.equal(first, second)  # same random geometry and intensity for both views
        assert first[mask].mean() > first[~mask].mean() + 0.3  # the mask still covers the block
        moved += not torch.equal(mask, torch.from_numpy(image > 200))
    assert moved >= 5
    with pytest.raises(ValueError, match="preset"):
        augmentation("extreme", 2)


def test_quarter_turns_give_all_eight_orientations_to_views_and_masks():
    image = np.zeros((8, 8), dtype=np.uint8)
    image[0, 1] = 255  # one marked pixel: its place tells the orientation
    cache = _two_view_sample(image, image > 0)

    def places(transform) -> set[tuple[int, int]]:
        dataset = MultiViewDataset(cache, np.array([0]), transform, seed=1)
        found = set()
        for epoch in range(80):
            item = dataset[(0, epoch)]
            views, mask = item["images"][:, 0], item["masks"][0] > 0
            assert torch.equal(views[0], views[1]) and torch.equal(views[0] > 0.5, mask)
            found.add(tuple(torch.nonzero(mask)[0].tolist()))
        return found

    corners = {(0, 1), (1, 0), (0, 6), (6, 0), (1, 7), (7, 1), (6, 7), (7, 6)}
    assert places(augmentation("light", 2, rotate90=True)) == corners
    # flips alone reach only the four mirror images of the pixel, never its transposes
    assert places(augmentation("light", 2)) == {(0, 1), (0, 6), (7, 1), (7, 6)}


def test_per_view_items_are_single_views_with_their_own_masks(cache):
    positions = np.arange(6)
    dataset = MultiViewDataset(cache, positions, per_view=True)
    assert len(dataset) == cache.view_mask[positions].sum()
    for k in range(len(dataset)):
        item = dataset[k]
        i, (view,) = dataset.items[k]
        assert item["images"].shape == (1, 1, 32, 32) and item["view_mask"].tolist() == [True]
        assert np.array_equal(item["masks"].numpy(), cache.masks[i, view])
        assert item["sample_id"] == f"{cache.sample_ids[i]}/{cache.views[view]}"
    fused = MultiViewDataset(cache, positions)[0]  # a sample's mask: the union of its views'
    assert np.array_equal(fused["masks"].numpy(), cache.masks[0].max(0))


def test_views_of_different_sizes_are_found_unregistered(cache):
    shapes = cache.view_shapes.copy()
    both = np.flatnonzero(cache.view_mask.all(1))
    shapes[both[0], 1] = (40, 32)
    changed = ImageCache.from_arrays({**cache.arrays(), "view_shapes": shapes})
    assert cache.unregistered([0, 1]).tolist() == []
    assert changed.unregistered([0, 1]).tolist() == [both[0]]
    assert changed.unregistered([0]).tolist() == []  # one view: nothing to register
    with pytest.raises(ValueError, match="older version"):
        ImageCache.from_arrays({k: v for k, v in cache.arrays().items() if k != "view_shapes"})


def test_modality_dropout_never_drops_the_last_view(cache):
    complete = np.flatnonzero(cache.view_mask.all(1))
    dataset = MultiViewDataset(cache, complete, modality_dropout=0.9, seed=0)
    present = torch.stack([dataset[k]["view_mask"] for k in range(len(dataset))])
    assert (present.sum(1) >= 1).all() and (present.sum(1) == 1).any()
    dropped = [dataset[k] for k in range(len(dataset))]
    assert all(d["images"][~d["view_mask"]].abs().sum() == 0 for d in dropped)


def test_collate_makes_a_typed_batch(cache):
    dataset = MultiViewDataset(cache, np.arange(4))
    batch = collate([dataset[k] for k in range(4)])
    assert batch.images.shape == (4, 2, 1, 32, 32) and batch.masks.shape[:2] == (
        4,
        len(cache.classes),
    )
    assert batch.images.max() <= 1.0 and len(batch.sample_ids) == 4


def test_balanced_sampling_draws_rare_classes_more_often():
    labels = np.array([[1, 0]] * 90 + [[0, 1]] * 10)
    drawn = labels[[i for i, _ in EpochSampler(100, seed=0, weights=balanced_weights(labels))]]
    assert drawn[:, 1].mean() > 0.3  # 10 % in the data


def test_epoch_sampler_depends_on_seed_and_epoch_only():
    sampler = EpochSampler(20, seed=1)
    first = list(sampler)
    sampler.set_epoch(3)
    third = list(sampler)
    fresh = EpochSampler(20, seed=1)
    fresh.set_epoch(3)
    assert list(fresh) == third != first
    assert sorted(i for i, _ in third) == list(range(20)) and {e for _, e in third} == {3}


def test_items_are_reproducible_per_epoch(cache):
    dataset = MultiViewDataset(
        cache, np.arange(4), augmentation("heavy", 2), modality_dropout=0.5, seed=7
    )
    assert torch.equal(dataset[(2, 5)]["images"], dataset[(2, 5)]["images"])
    assert not torch.equal(dataset[(2, 5)]["images"], dataset[(2, 6)]["images"])


def test_samples_without_the_chosen_view_are_left_out_and_listed(cache):
    ch4 = cache.views.index("ch4")
    missing = np.flatnonzero(~cache.view_mask[:, ch4])
    assert len(missing)  # the synthetic data drop a view here and there
    positions = np.arange(len(cache.sample_ids))
    dataset = MultiViewDataset(cache, positions, view_index=[ch4])
    assert len(dataset) == len(positions) - len(missing)
    assert dataset.without_views == sorted(cache.sample_ids[missing])
    assert MultiViewDataset(cache, positions).without_views == []


def test_a_fused_prediction_is_one_row_per_present_photo(cache):
    view_mask = cache.view_mask.copy()
    view_mask[1, 0] = False  # sample 1 lacks its first view
    partial = ImageCache.from_arrays({**cache.arrays(), "view_mask": view_mask})
    positions = np.arange(4)
    fused = MultiViewDataset(partial, positions)
    probs = torch.rand(len(fused), 2)
    table = prediction_table("test", fused, probs, torch.ones(len(fused), 2), ["a", "b"])
    photos = per_photo_table(table, fused)
    per_view = MultiViewDataset(partial, positions, per_view=True)
    assert photos["item_id"].tolist() == [per_view.item_id(k) for k in range(len(per_view))]
    assert len(photos) == view_mask[positions].sum() == 2 * len(positions) - 1
    by_sample = table.set_index("sample_id")[["prob_a", "prob_b"]]
    assert np.array_equal(photos[["prob_a", "prob_b"]], by_sample.loc[photos["sample_id"]])
    per_view_table = prediction_table(
        "test", per_view, torch.rand(len(per_view), 2), torch.ones(len(per_view), 2), ["a", "b"]
    )
    assert per_photo_table(per_view_table, per_view) is per_view_table


def test_quarter_turns_are_for_training_only(cache):
    ids = list(cache.sample_ids[:4])
    datasets = build_datasets(
        cache,
        {"train": ids, "val": ids},
        cache.labels,
        list(cache.views),
        False,
        AugmentationSettings(rotate90=True),
        seed=0,
    )
    steps = {part: [type(t).__name__ for t in d.transform] for part, d in datasets.items()}
    assert "RandomRotate90" in steps["train"] and "RandomRotate90" not in steps["val"]


def test_a_wide_image_keeps_its_aspect_ratio_and_its_mask_stays_aligned():
    height, width = 40, 120  # 3:1
    image = np.full((height, width), 60, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[10:30, 90:110] = 1  # a square defect near the right edge
    image[mask > 0] = 250
    padded = to_square(image, 60, cv2.INTER_AREA, "pad")
    padded_mask = to_square(mask, 60, cv2.INTER_NEAREST, "pad")
    assert content_box(height, width, 60, "pad") == (20, 0, 20, 60)  # 60 x 20: still 3:1
    assert (padded[:20] == 0).all() and (padded[40:] == 0).all() and (padded[20:40] > 0).all()
    rows, columns = np.nonzero(padded_mask)
    assert (rows.max() - rows.min() + 1, columns.max() - columns.min() + 1) == (10, 10)  # square
    assert (padded[padded_mask > 0] == 250).all()  # the mask covers the defect's pixels
    stretched = np.nonzero(to_square(mask, 60, cv2.INTER_NEAREST, "stretch"))
    assert np.ptp(stretched[0]) > 2 * np.ptp(stretched[1])  # the square defect squashed
    back = from_square(padded_mask, height, width, "pad")
    assert back.shape == (height, width) and (back == mask).mean() > 0.98


def test_a_padded_cache_is_its_own_cache(prepared, cache):
    samples, manifest, masks, raw, classes = prepared
    padded = build_image_cache(
        samples,
        manifest,
        masks,
        raw.__getitem__,
        views=["co2", "ch4"],
        classes=classes,
        image_size=32,
        resize="pad",
    )
    # square photos fill the square either way; the fingerprint still tells them apart
    assert np.array_equal(padded.images, cache.images)
    assert padded.fingerprint == cache_fingerprint(
        samples, manifest, ["co2", "ch4"], classes, 32, "pad"
    )
    assert padded.fingerprint != cache.fingerprint


@pytest.mark.parametrize(
    ("sides", "cap", "size"),
    [
        ([(300, 257), (400, 260), (250, 500)], 224, 224),  # larger than the cap: the cap
        ([(100, 130), (90, 200), (120, 96)], 224, 96),  # median 100, down to 96
        ([(20, 20), (24, 30)], 224, 32),  # tiny images: never below 32
        ([(1000, 40), (40, 40), (800, 600)], 512, 32),  # the shorter side counts
    ],
)
def test_an_auto_image_size_is_the_median_shorter_side_in_steps_of_32(sides, cap, size):
    manifest = pd.DataFrame(sides, columns=["width", "height"])
    assert chosen_image_size("auto", manifest, cap) == size
    assert chosen_image_size(80, manifest, cap) == 80  # a size given is kept
    with pytest.raises(ValueError, match="manifest is empty"):
        chosen_image_size("auto", manifest.iloc[:0], cap)
