"""The binary task of one anomaly type: that type against samples with no anomaly at all.

Samples carrying only other types are left out of training and validation (``exclude``)
or taken as negatives (``negative``); the test split keeps every sample, so a binary model
is scored on the same test samples as the multi-label model. No Kedro.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pandas as pd

from anomaly_lens.ml.data.cache import ImageCache

OTHER_ANOMALIES = ("exclude", "negative")
TRAINING_SPLITS = ("train", "val")


def class_index(cache: ImageCache, anomaly_type: str) -> int:
    """The column of ``anomaly_type``; a clear error where the data has no such class."""
    if anomaly_type not in cache.classes:
        raise ValueError(
            f"binary type {anomaly_type!r} is not a class of the data {cache.classes}: "
            "check binary.types"
        )
    return cache.classes.index(anomaly_type)


def binary_cache(cache: ImageCache, anomaly_type: str) -> ImageCache:
    """The cache with one class: ``anomaly_type``'s labels and masks."""
    k = class_index(cache, anomaly_type)
    return dataclasses.replace(
        cache,
        labels=cache.labels[:, k : k + 1],
        masks=cache.masks[:, :, k : k + 1],
        classes=[anomaly_type],
    )


def binary_splits(
    splits: pd.DataFrame, cache: ImageCache, anomaly_type: str, other_anomalies: str
) -> pd.DataFrame:
    """The split table of ``anomaly_type``'s task: with ``exclude``, samples that carry other
    types but not this one leave train and val; test is never changed."""
    if other_anomalies not in OTHER_ANOMALIES:
        raise ValueError(f"other_anomalies must be one of {OTHER_ANOMALIES}")
    k = class_index(cache, anomaly_type)
    if other_anomalies == "negative":
        return splits.copy()
    labels = pd.DataFrame(cache.labels, index=cache.sample_ids)
    others = labels.drop(columns=k).sum(1) > 0
    only_others = (others & (labels[k] == 0)).reindex(splits["sample_id"]).to_numpy()
    drop = only_others & splits["split"].isin(TRAINING_SPLITS).to_numpy()
    return splits[~drop].reset_index(drop=True)


def merged(base: Mapping[str, Any], *overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with each override merged in key by key (nested mappings too)."""
    out = dict(base)
    for override in overrides:
        for key, value in (override or {}).items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out
