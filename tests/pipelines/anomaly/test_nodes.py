"""The anomaly pipeline's nodes on generated data: fitted on normal train images only,
threshold from validation, metrics and maps for val and test, refused on another split."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from anomaly_lens.ml.data import synthetic
from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.pipelines.anomaly.nodes import (
    evaluate_anomaly_detector,
    fit_anomaly_detector,
    plot_anomaly_maps,
)
from anomaly_lens.pipelines.train.nodes import cache_images
from tests.conftest import base_parameters
from tests.pipelines.train.test_nodes import VIEWS, prepare


@pytest.fixture(scope="module")
def data():
    samples, manifest, masks, raw, classes, splits = prepare(
        synthetic.SyntheticConfig(n_specimens=16, image_size=64, seed=3)
    )
    train = copy.deepcopy(base_parameters()["train"]) | {"image_size": 64}
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, train)
    anomaly = copy.deepcopy(base_parameters()["anomaly"]) | {
        "coreset_ratio": 0.1,
        "bootstrap_rounds": 20,
    }
    return cache, splits, anomaly, train, (samples, manifest, masks, raw)


def test_the_detector_learns_normal_train_images_only_and_is_scored_on_val_and_test(data):
    cache, splits, anomaly, train, _ = data
    detector = fit_anomaly_detector(cache, splits, anomaly, train)
    images = ImageCache.from_arrays(cache)
    train_ids = set(splits.loc[splits["split"] == "train", "sample_id"])
    normal_train = sum(
        int(view.sum())
        for sample, labels, view in zip(
            images.sample_ids, images.labels, images.view_mask, strict=True
        )
        if sample in train_ids and not labels.any()
    )
    assert 0 < detector.n_train_images == min(anomaly["max_train_images"], normal_train)
    assert detector.threshold is not None and detector.threshold_rule

    scores, report, headline = evaluate_anomaly_detector(detector, cache, splits, anomaly)
    assert set(scores["split"]) == {"val", "test"}
    assert not set(scores["sample_id"]) & train_ids  # train images are never scored
    test = report["test"]["per_sample"]
    low, high = test["auroc_interval"]
    assert 0.5 < test["auroc"] <= 1.0 and low <= test["auroc"] <= high
    assert 0.0 <= report["test"]["pixel"]["pixel_auroc"] <= 1.0
    assert {"test_image_auroc", "test_pixel_auroc"} <= set(headline)
    assert isinstance(plot_anomaly_maps(detector, cache, splits, anomaly), Figure)


def test_a_detector_is_refused_on_a_split_it_was_not_fitted_on(data):
    cache, splits, anomaly, train, _ = data
    detector = fit_anomaly_detector(cache, splits, anomaly, train)
    redrawn = splits.assign(split=np.roll(splits["split"].to_numpy(), 1))
    with pytest.raises(ValueError, match="another split"):
        evaluate_anomaly_detector(detector, cache, redrawn, anomaly)


def test_new_images_are_scored_as_the_cache_was_read(data):
    """Inference reads new images through the detector itself: the same scores as the
    pipeline's cache for the same images, a row per photo and per sample (its highest)."""
    cache, splits, anomaly, train, (samples, manifest, masks, raw) = data
    detector = fit_anomaly_detector(cache, splits, anomaly, train)
    table, maps = detector.score_samples(samples, manifest, masks, lambda pid: raw[pid]())
    images = ImageCache.from_arrays(cache)
    photos = table[table["level"] == "photo"].set_index("item_id")
    assert len(photos) == int(images.view_mask.sum())
    i, v = np.nonzero(images.view_mask)
    expected, _ = detector.score(images.images[i, v])
    ids = [f"{s}/{images.views[k]}" for s, k in zip(images.sample_ids[i], v, strict=True)]
    np.testing.assert_allclose(photos.loc[ids, "anomaly_score"], expected, rtol=1e-5)
    per_sample = table[table["level"] == "sample"].set_index("sample_id")["anomaly_score"]
    assert per_sample.to_dict() == photos.groupby("sample_id")["anomaly_score"].max().to_dict()
    assert (table["anomalous"] == (table["anomaly_score"] > detector.threshold)).all()
    # each photo's map, as inference writes it: 128 at the threshold, its peak where the
    # detector's own map peaks
    assert sorted(maps) == sorted(ids)
    _, own = detector.score(images.images[i[:1], v[:1]])
    png = decode_png(detector.map_png(maps[ids[0]]))
    assert png.shape == own[0].shape and png.dtype == np.uint8
    expected_png = np.clip(np.round(own[0] / (2 * detector.threshold) * 255), 0, 255)
    np.testing.assert_allclose(png, expected_png, atol=1)


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))
