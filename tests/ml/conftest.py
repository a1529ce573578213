"""A tiny prepared dataset built with the library itself: generate, inspect, pair."""

from __future__ import annotations

import pytest

from anomaly_lens.ml.data import imaging, synthetic
from anomaly_lens.ml.data.cache import build_image_cache
from anomaly_lens.ml.data.inspection import MaskRule, inspect_records
from anomaly_lens.ml.data.layouts.synthetic import from_synthetic
from anomaly_lens.ml.data.pairing import SAMPLE_ID_SEPARATOR, pair_views

PATTERN = r"(?P<view>[^/]+)/(?P<specimen_id>S\d+)_(?P<condition>[^/]+)"


@pytest.fixture(scope="session")
def prepared():
    """(samples, manifest, masks, raw bytes by partition id) for 8 specimens at 32 px."""
    data = synthetic.generate(synthetic.SyntheticConfig(n_specimens=8, image_size=32, seed=5))
    raw = {k: imaging.encode_png(v) for k, v in data.images.items()}
    records = from_synthetic(
        {k: (lambda c=c: c) for k, c in raw.items()}, data.annotations, PATTERN
    )
    result = inspect_records(records, [], MaskRule())
    manifest = result.manifest
    key = manifest["specimen_id"] + SAMPLE_ID_SEPARATOR + manifest["condition"]
    samples, _ = pair_views(manifest, key, manifest["specimen_id"], ["co2", "ch4"], result.classes)
    return samples, manifest, result.masks, raw, result.classes


@pytest.fixture(scope="session")
def cache(prepared):
    samples, manifest, masks, raw, classes = prepared
    return build_image_cache(
        samples,
        manifest,
        masks,
        raw.__getitem__,
        views=["co2", "ch4"],
        classes=classes,
        image_size=32,
    )
