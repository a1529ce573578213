import numpy as np
import pytest
import torch

from anomaly_lens.ml.data import (
    EpochSampler,
    ImageCache,
    MultiViewDataset,
    augmentation,
    balanced_weights,
    build_image_cache,
    cache_fingerprint,
    collate,
)


def test_cache_holds_every_sample_decoded_once(prepared, cache):
    samples, manifest, masks, raw, classes = prepared
    assert cache.images.shape == (len(samples), 2, 32, 32) and cache.images.dtype == np.uint8
    assert cache.view_mask.sum() == len(manifest)
    assert cache.labels.tolist() == samples[[f"label_{c}" for c in classes]].to_numpy().tolist()
    # a class's mask is present exactly when the sample carries that label
    assert (
        (cache.masks.reshape(*cache.masks.shape[:2], -1).max(-1) > 0) == (cache.labels > 0)
    ).all()
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


def test_augmentation_moves_views_and_masks_together():
    image = np.full((32, 32), 40, dtype=np.uint8)
    image[4:12, 6:20] = 250  # a bright, off-centre, asymmetric block marked by the mask
    cache = ImageCache(
        sample_ids=np.array(["s"]),
        images=np.stack([image, image])[None],
        view_mask=np.ones((1, 2), bool),
        labels=np.ones((1, 1), np.uint8),
        masks=(image > 200).astype(np.uint8)[None, None],
        views=["a", "b"],
        classes=["x"],
        fingerprint="",
    )
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
