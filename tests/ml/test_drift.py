"""Drift: new images measured against the training images by KID on frozen features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from anomaly_lens.ml.evaluation.drift import class_distances, fid, fit_reference, kid


def textures(n: int, seed: int, size: int = 48) -> np.ndarray:
    """Grey images of one kind: smooth random texture around one brightness."""
    rng = np.random.default_rng(seed)
    fields = [ndimage.gaussian_filter(rng.standard_normal((size, size)), 3) for _ in range(n)]
    return np.stack([np.clip(110 + 400 * f, 0, 255).astype(np.uint8) for f in fields])


@pytest.fixture(scope="module")
def reference():
    return fit_reference("model-a", textures(120, 1), textures(60, 2), "tf_efficientnet_lite0")


def test_a_corrupted_folder_raises_the_drift_flag_and_an_unshifted_one_does_not(reference):
    unshifted = textures(40, 3)
    noisy = np.clip(unshifted + np.random.default_rng(4).normal(0, 40, unshifted.shape), 0, 255)
    blurred = np.stack([ndimage.uniform_filter(image, 7) for image in unshifted])
    same = reference.measure(unshifted)
    assert not same["drift"] and same["kid"] <= same["threshold"] and same["n_images"] == 40
    for corrupted in (noisy.astype(np.uint8), blurred):
        found = reference.measure(corrupted)
        assert found["drift"] and found["kid"] > found["threshold"]
        assert found["fid"] > same["fid"]
    assert reference.model_id == "model-a" and len(reference.train) == 120


def test_the_threshold_is_what_sets_of_that_size_reach_by_chance(reference):
    assert reference.threshold(10) > reference.threshold(60)  # smaller sets vary more
    features = np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)
    assert kid(features, features + 3) > kid(features, features[::-1].copy()) + 1
    with pytest.raises(ValueError, match="at least two"):
        kid(features[:1], features)


def test_fid_and_kid_per_class_grow_with_a_shift_and_say_when_a_class_is_too_small():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((120, 8)).astype(np.float32)
    same, moved = base[:60], base[60:] + 2.0
    assert fid(base[60:], same) < fid(base[60:], moved)  # a shifted mean grows FID
    reference_classes = [{"normal"}] * 60 + [{"crack"}] * 60
    other_classes = [{"normal"}] * 30 + [{"crack"}] * 29 + [{"hole"}]
    other = np.concatenate([base[:30], base[90:119] + 2.0, base[119:]])
    found = class_distances(base, reference_classes, other, other_classes)
    assert set(found) == {"normal", "crack", "hole"}
    assert found["crack"]["kid"] > found["normal"]["kid"]
    assert found["crack"]["fid"] > found["normal"]["fid"]
    assert found["hole"]["n_reference"] == 0 and "reason" in found["hole"]
    assert found["crack"]["n_other"] == 29
