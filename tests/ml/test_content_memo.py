"""Results kept per content: the same pixels reuse a result, anything else computes anew,
and a caller cannot change what the next caller gets."""

from __future__ import annotations

import numpy as np

from anomaly_lens.ml.content_memo import memoised_by_content
from anomaly_lens.ml.evaluation.baseline import sample_features


def test_same_content_reuses_the_result_and_other_content_does_not():
    calls = []

    @memoised_by_content(size=2)
    def mean_rows(images, scale, kind="mean"):
        calls.append(1)
        return images.mean(1) * scale

    images = np.arange(12, dtype=np.uint8).reshape(3, 4)
    first = mean_rows(images, 2)
    first[:] = -1  # the caller's copy, not the memo's
    assert np.array_equal(mean_rows(images.copy(), 2), images.mean(1) * 2) and len(calls) == 1
    for other in (
        (images[::-1].copy(), 2),  # other pixels
        (images.astype(np.uint16), 2),  # the same values in another dtype
        (images.reshape(4, 3), 2),  # another shape
        (images, 3),  # another setting
    ):
        mean_rows(*other)
    assert len(calls) == 5
    mean_rows(images, 2, kind="median")  # a named argument is part of the key too
    assert len(calls) == 6
    mean_rows(images, 2)  # evicted: only the last two are kept
    assert len(calls) == 7


def test_the_baseline_features_are_the_same_from_the_memo():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 2, 32, 32), dtype=np.uint8)
    mask = np.array([[1, 1], [1, 0], [0, 1], [1, 1]], bool)
    first = sample_features(images, mask)
    again = sample_features(images.copy(), mask.copy())
    assert np.array_equal(first, again) and first is not again
    assert (again[1].reshape(2, -1)[1] == -1).all()  # the missing view
