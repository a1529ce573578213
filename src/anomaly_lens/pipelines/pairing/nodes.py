"""Nodes of the ``pairing`` pipeline: one row per sample across its views."""

from __future__ import annotations

import logging

import pandas as pd

from anomaly_lens.ml.data.pairing import SAMPLE_ID_SEPARATOR, pair_views, recover_tiles
from anomaly_lens.parameters import PairingParams, parse_block

logger = logging.getLogger(__name__)


def _group_column(group: str | list[str], columns: pd.Index) -> str:
    """``group`` itself, or the first of a list of candidates that the manifest has."""
    candidates = [group] if isinstance(group, str) else list(group)
    for column in candidates:
        if column in columns:
            return column
    raise ValueError(f"pairing group: none of the columns {candidates} is in the manifest")


def key_samples(manifest: pd.DataFrame, params: dict) -> pd.DataFrame:
    """The manifest with ``sample_key`` and ``group_key`` columns.

    ``group`` names a column, or lists candidates of which the first in the manifest is
    used (e.g. ``[group, name]``: a ``group`` field of the file-name pattern where there is
    one, else the image itself). With ``tiles`` set (Magnetic Tile), the tile recovered
    from the capture numbers is both key and group; images outside any sequence (``exp0``)
    become single-image samples.
    """
    settings = parse_block(PairingParams, params)
    frame = manifest.copy()
    tiles = settings.tiles
    if tiles:
        tile = recover_tiles(frame, tiles.folder, "view", tiles.number, tiles.max_gap)
        frame["tile_id"] = tile.fillna(frame["image_id"])
        frame["in_sequence"] = tile.notna()
    key = settings.key
    missing = sorted(set(key) - set(frame.columns))
    if missing:
        raise ValueError(f"pairing key columns {missing} are not in the manifest")
    group = _group_column(settings.group, frame.columns)
    logger.info("Samples keyed by %s, grouped by %s", key, group)
    frame["sample_key"] = frame[key].astype(str).agg(SAMPLE_ID_SEPARATOR.join, axis=1)
    frame["group_key"] = frame[group].astype(str)
    return frame


def pair_samples(
    keyed: pd.DataFrame, class_names: list[str], params: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``samples`` (one row per sample) and the table of resolved label conflicts."""
    settings = parse_block(PairingParams, params)
    # Sample-level columns; an image's own id is already in its ``image_<view>`` column.
    keep = [c for c in settings.key + settings.keep if c in keyed.columns and c != "image_id"]
    if "in_sequence" in keyed.columns:
        keep.append("in_sequence")
    samples, conflicts = pair_views(
        keyed.drop(columns=["sample_key", "group_key"]),
        keyed["sample_key"],
        keyed["group_key"],
        settings.views,
        class_names,
        keep_columns=keep,
    )
    logger.info(
        "Paired %d images into %d samples (%d complete); %d label conflicts resolved by union",
        len(keyed),
        len(samples),
        int(samples["complete"].sum()),
        len(conflicts),
    )
    return samples, conflicts


def summarise_pairing(samples: pd.DataFrame, conflicts: pd.DataFrame, params: dict) -> dict:
    """Complete vs partial samples, presence per view, per class; conflict counts."""
    expected_views = parse_block(PairingParams, params).views
    views = [c.removeprefix("image_") for c in samples.columns if c.startswith("image_")]
    classes = [c.removeprefix("label_") for c in samples.columns if c.startswith("label_")]
    partial = samples.loc[~samples["complete"]]
    report = {
        "n_samples": int(len(samples)),
        "n_groups": int(samples["group_id"].nunique()),
        "complete_samples": int(samples["complete"].sum()),
        "partial_samples": int(len(partial)),
        "extra_views": [v for v in views if v not in expected_views],
        "samples_by_number_of_views": {
            str(k): int(v) for k, v in samples["n_views"].value_counts().sort_index().items()
        },
        "images_by_view": {v: int(samples[f"image_{v}"].notna().sum()) for v in views},
        "missing_by_view": {v: int(samples[f"image_{v}"].isna().sum()) for v in expected_views},
        "samples_by_class": {c: int(samples[f"label_{c}"].sum()) for c in classes},
        "complete_by_class": {
            c: int(samples.loc[samples[f"label_{c}"] == 1, "complete"].sum()) for c in classes
        },
        "normal_samples": int((samples["labels"].map(len) == 0).sum()),
        "label_conflicts": int(len(conflicts)),
        "label_conflicts_by_class": {
            str(k): int(v) for k, v in conflicts["class"].value_counts().sort_index().items()
        },
        "conflict_rule": "a sample carries every label seen in any of its views (union)",
    }
    if "in_sequence" in samples.columns:
        report["single_image_samples_outside_sequences"] = int((~samples["in_sequence"]).sum())
    return report
