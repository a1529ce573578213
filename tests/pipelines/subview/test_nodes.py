"""The subview nodes on a tiny trained model: regions from train samples only, crops of
the same shape, a model trained and compared."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.pipelines.evaluate.nodes import evaluate_model
from anomaly_lens.pipelines.subview.nodes import (
    attribution_regions,
    compare_subview,
    crop_to_regions,
    train_on_crops,
)
from tests.conftest import base_parameters
from tests.pipelines.train.test_nodes import VIEWS, prepared, train_tiny  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):  # noqa: F811
    return train_tiny(prepared, tmp_path_factory.mktemp("ckpt"))


def _settings():
    settings = base_parameters()["subview"]
    settings["attribution"]["n_steps"] = 4
    return settings


def test_regions_come_from_the_train_split_only(trained):
    bundle, cache, splits, _ = trained
    regions = attribution_regions(bundle, cache, splits, _settings())
    assert regions["fitted_on"]["split"] == "train" and set(regions["crop"]) <= set(VIEWS)
    for x0, y0, x1, y1 in regions["crop"].values():
        assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
    moved = splits.assign(split=splits["split"].replace({"test": "val"}))
    assert attribution_regions(bundle, cache, moved, _settings())["crop"] == regions["crop"]


def test_crops_keep_the_cache_shape_and_train_a_comparable_model(trained):
    bundle, cache, splits, p = trained
    regions = {"crop": {"co2": [8, 8, 24, 24]}}
    cropped = ImageCache.from_arrays(crop_to_regions(cache, regions))
    original = ImageCache.from_arrays(cache)
    assert cropped.images.shape == original.images.shape
    assert np.array_equal(cropped.images[:, 1], original.images[:, 1])  # ch4 left whole
    assert not np.array_equal(cropped.images[:, 0], original.images[:, 0])
    assert set(np.unique(cropped.masks)) <= {0, 1}
    sub_bundle, history = train_on_crops(cropped.arrays(), splits, p)
    assert len(history) == 1 and sub_bundle.classes == bundle.classes
    full, _ = evaluate_model(bundle, cache, splits, None, p)
    sub, _ = evaluate_model(sub_bundle, cropped.arrays(), splits, None, p)
    report = compare_subview(full, sub, regions)
    assert report["comparison"]["full_view"]["test_macro_f1"] == full["test"]["macro_f1"]
    assert report["change_in_test_macro_f1"] == pytest.approx(
        sub["test"]["macro_f1"] - full["test"]["macro_f1"]
    )
