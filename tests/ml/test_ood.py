"""Each detector separates shifted features from in-distribution ones; corruptions and
textures are what they claim."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from scipy import ndimage

from anomaly_lens.ml.evaluation.detectors import OOD_DETECTORS, Detector, register_detector
from anomaly_lens.ml.evaluation.ood import (
    CORRUPTIONS,
    DETECTORS,
    OODScorer,
    corrupt,
    separation,
    textures,
)


def features(n: int, ood: bool, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """In-distribution: one confident class per item, features around one direction.
    OOD: flat logits, features around another direction."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 3, generator=generator) * (0.3 if ood else 1.0)
    if not ood:
        logits[torch.arange(n), torch.randint(0, 3, (n,), generator=generator)] += 6
    centre = torch.zeros(16)
    centre[8:] = 3.0 if ood else 0.0
    centre[:8] = 0.0 if ood else 3.0
    return logits, torch.randn(n, 16, generator=generator) + centre


FEATURE_DETECTORS = [name for name in DETECTORS if not OOD_DETECTORS[name].reads_images]


@pytest.mark.parametrize("name", FEATURE_DETECTORS)
@pytest.mark.parametrize("label_type", ["multiclass", "multilabel"])
def test_each_detector_separates_a_shifted_set(name, label_type):
    """In-distribution: confident logits, features like the training ones; OOD: flat
    logits (low confidence), features moved away."""
    train_logits, train_z = features(400, False, 0)
    in_logits, in_z = features(200, False, 1)
    out_logits, out_z = features(200, True, 2)
    groups = (train_logits.argmax(1)).numpy()
    scorer = OODScorer(name, label_type, neighbours=10).fit(train_logits, train_z, groups)
    found = separation(scorer.score(in_logits, in_z), scorer.score(out_logits, out_z))
    assert found["auroc"] > 0.9 and 0 <= found["fpr95"] <= 1


def test_the_one_class_detector_reads_the_items_images_and_flags_corrupted_ones():
    """Items of two views, one missing in some: fitted on clean training items, it ranks
    every noisy item above the clean ones, and refuses to score without the images."""
    rng = np.random.default_rng(0)
    fields = ndimage.gaussian_filter(rng.standard_normal((150, 2, 64, 64)), (0, 0, 2, 2))
    pixels = np.clip(110 + 300 * fields, 0, 255).astype(np.uint8)
    mask = np.ones((150, 2), bool)
    mask[::3, 1] = False  # a missing view is never read
    pixels[mask == False] = 255  # noqa: E712
    train, clean = (pixels[:100], mask[:100]), (pixels[100:], mask[100:])
    noisy = (corrupt(pixels[100:], "gaussian_noise", 3, 1), mask[100:])
    logits, z = features(150, False, 0)
    scorer = OODScorer("patchcore", "multiclass", seed=1).fit(logits[:100], z[:100], None, train)
    inside, outside = scorer.score(None, None, clean), scorer.score(None, None, noisy)
    assert separation(inside, outside)["auroc"] > 0.95
    with pytest.raises(ValueError, match="reads the items' images"):
        scorer.score(logits[100:], z[100:])
    assert np.allclose(pickle.loads(pickle.dumps(scorer)).score(None, None, clean), inside)
    # Another model's scorer on the same training images reuses the fit and the scores
    # (they depend on the pixels alone); other images or another seed are fitted anew.
    again = OODScorer("patchcore", "multiclass", seed=1, model_id="other model")
    again.fit(logits[:100], z[:100], None, train)
    assert again._fitted is scorer._fitted
    assert np.array_equal(again.score(None, None, noisy), outside)
    shifted = (train[0][::-1].copy(), train[1][::-1].copy())
    for seed, images in ((2, train), (1, shifted)):
        other = OODScorer("patchcore", "multiclass", seed=seed).fit(None, None, None, images)
        assert other._fitted.digest != scorer._fitted.digest
        assert other._fitted.detector is not scorer._fitted.detector


def test_threshold_keeps_the_requested_share():
    logits, z = features(1000, False, 0)
    scorer = OODScorer("energy", "multiclass").fit(logits, z, np.zeros(1000))
    scorer.set_threshold(scorer.score(logits, z), 0.95)
    _, flagged = scorer.flag(logits, z)
    assert flagged.mean() == pytest.approx(0.05, abs=0.002)


def test_separation_of_disjoint_scores_is_perfect():
    found = separation(np.zeros(50), np.ones(50))
    assert found["auroc"] == 1 and found["fpr95"] == 0


def test_corruptions_keep_the_shape_and_grow_with_severity():
    images = np.full((2, 3, 32, 32), 128, np.uint8)
    images[..., 8:24, 8:24] = 200
    for name in CORRUPTIONS:
        out = corrupt(images, name, 3, seed=0)
        assert out.shape == images.shape and out.dtype == np.uint8
    change = [np.abs(corrupt(images, "gaussian_noise", s, 0) - 128.0).mean() for s in (1, 5)]
    assert change[1] > change[0]
    assert corrupt(images, "contrast", 5, 0).std() < corrupt(images, "contrast", 1, 0).std()


def test_textures_are_seeded_grey_images():
    first, again = textures(8, 32, seed=1), textures(8, 32, seed=1)
    assert first.shape == (8, 32, 32) and first.dtype == np.uint8
    assert np.array_equal(first, again) and first.std() > 20


def test_a_registered_detector_is_fitted_and_scored_by_name(monkeypatch):
    """Adding a detector is one module of ``ml.evaluation.detectors`` with a class under
    ``@register_detector``: ``OODScorer`` finds it by name; an unknown name is refused with
    the registered ones."""

    class Norm(Detector):
        def fit(self, logits, features, groups, scorer):
            return features.norm(dim=1).mean()

        def score(self, fitted, logits, features, label_type):
            return (features.norm(dim=1) - fitted).numpy()

    monkeypatch.setitem(OOD_DETECTORS, "feature_norm", None)  # removed again afterwards
    register_detector("feature_norm")(Norm)
    train_logits, train_z = features(200, False, 0)
    scorer = OODScorer("feature_norm", "multiclass").fit(train_logits, train_z, np.zeros(200))
    far = features(50, False, 1)[1] * 10  # features far larger than the training ones
    assert (scorer.score(train_logits[:50], far) > scorer.score(train_logits, train_z).max()).all()
    with pytest.raises(ValueError, match="detector must be one of.*knn"):
        OODScorer("nope", "multiclass")


def test_a_detector_pickled_before_the_library_was_grouped_still_loads():
    """``ood_detector.pkl`` files written before name ``anomaly_lens.ml.ood.OODScorer``."""
    logits, z = features(60, False, 0)
    scorer = OODScorer("knn", "multiclass", neighbours=5).fit(logits, z, np.zeros(60))
    scorer.set_threshold(scorer.score(logits, z), 0.95)
    old = pickle.dumps(scorer, protocol=0).replace(
        b"anomaly_lens.ml.evaluation.ood", b"anomaly_lens.ml.ood"
    )
    assert b"anomaly_lens.ml.ood\n" in old
    loaded = pickle.loads(old)
    assert np.allclose(loaded.score(logits, z), scorer.score(logits, z))
