"""Nodes of the ``split`` pipeline: leak-free, group-aware, multi-label stratified splits."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from anomaly_lens.ml.data.imaging import hamming_pairs
from anomaly_lens.ml.data.splitting import (
    SPLITS,
    LeakageError,
    assert_no_leakage,
    assign_splits,
    merge_groups_sharing_content,
    missing_classes,
)
from anomaly_lens.parameters import ColumnValues, SplitParams, parse_block

logger = logging.getLogger(__name__)


def _sample_images(samples: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per (sample position, image) with the image's exact and perceptual hash."""
    image_columns = [c for c in samples.columns if c.startswith("image_")]
    images = (
        samples[image_columns]
        .reset_index(drop=True)
        .stack()
        .dropna()
        .rename("image_id")
        .reset_index()
    )
    images = images.rename(columns={"level_0": "position"})[["position", "image_id"]]
    return images.merge(manifest[["image_id", "sha256", "dhash"]], on="image_id", how="left")


def _near_duplicate_samples(images: pd.DataFrame, max_bits: int) -> list[tuple[int, int]]:
    """Pairs of sample positions whose images differ in at most ``max_bits`` hash bits."""
    if max_bits < 0:
        return []
    positions = images["position"].to_numpy()
    pairs = hamming_pairs(images["dhash"].tolist(), max_bits)
    return sorted({(positions[i], positions[j]) for i, j in pairs if positions[i] != positions[j]})


def _units(samples, manifest, max_bits: int) -> tuple[pd.DataFrame, list[tuple[int, int]]]:
    """Samples with their content hashes and units (groups joined where their images share
    content or look the same), and the near-duplicate sample pairs."""
    frame = samples[["sample_id", "group_id"]].reset_index(drop=True)
    images = _sample_images(samples, manifest)
    frame["hashes"] = images.groupby("position")["sha256"].agg(list).reindex(frame.index).values
    near = _near_duplicate_samples(images, max_bits)
    frame["unit_id"] = merge_groups_sharing_content(frame["group_id"], frame["hashes"], near)
    return frame, near


def _check_no_leakage(frame: pd.DataFrame, near: list[tuple[int, int]]) -> None:
    """No group, content hash or near-duplicate pair in two of train/val/test."""
    assert_no_leakage(frame, "group_id")
    assert_no_leakage(frame, "hashes")
    core = frame["split"].isin(SPLITS).to_numpy()
    split = frame["split"].to_numpy()
    crossing = [(i, j) for i, j in near if core[i] and core[j] and split[i] != split[j]]
    if crossing:
        raise LeakageError(f"{len(crossing)} near-duplicate sample pairs are in two splits")


def _selected(samples: pd.DataFrame, chosen: ColumnValues) -> np.ndarray:
    """Whether each sample's ``chosen.column`` holds one of ``chosen.values``."""
    if chosen.column not in samples.columns:
        raise ValueError(f"split: no sample column {chosen.column!r} in {list(samples.columns)}")
    return samples[chosen.column].astype(str).isin(map(str, chosen.values)).to_numpy()


def split_samples(
    samples: pd.DataFrame, manifest: pd.DataFrame, class_names: list[str], params: dict
) -> tuple[pd.DataFrame, dict]:
    """``splits`` (``sample_id``, ``group_id``, ``unit_id``, ``split``, ``fold``) and content facts.

    Whole groups go to one split. Groups whose images share exact content (sha256), or
    look the same (difference hashes within ``near_duplicate_bits``; -1 turns this off),
    are joined into one unit first. The node asserts that no group, no content hash and
    no near-duplicate pair is in two of train/val/test. An optional ``holdout`` sends
    every sample with a given column value to ``shift``; ``given_test`` keeps a data
    set's own test split (groups reaching into it go to test whole).
    """
    settings = parse_block(SplitParams, params)
    frame, near = _units(samples, manifest, settings.near_duplicate_bits)
    labels = samples[[f"label_{c}" for c in class_names]].to_numpy()
    inside = np.ones(len(samples), dtype=bool)
    if settings.holdout:
        inside = ~_selected(samples, settings.holdout)
    given = _selected(samples, settings.given_test)[inside] if settings.given_test else None
    frame["split"] = "shift"
    assigned = assign_splits(
        frame.loc[inside, "unit_id"],
        labels[inside],
        settings.ratios,
        settings.seed,
        candidates=settings.candidates,
        given_test=given,
    )
    frame.loc[inside, "split"] = assigned["split"].values
    _check_no_leakage(frame, near)
    for warning in missing_classes(
        samples.reset_index(drop=True).assign(split=frame["split"]), class_names, frame["unit_id"]
    ):
        logger.warning("Split: %s", warning)
    facts = {
        "near_duplicate_bits": settings.near_duplicate_bits,
        "near_duplicate_sample_pairs": len(near),
        "groups": int(frame["group_id"].nunique()),
        "units_after_joining_shared_content": int(frame["unit_id"].nunique()),
    }
    if given is not None:  # the data set's own test split, and what keeping units whole added
        facts["given_test_samples"] = int(given.sum())
        facts["test_samples"] = int((frame["split"] == "test").sum())
    logger.info("Split units: %s", facts)
    return frame.drop(columns="hashes"), facts


def _share_table(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Per split and class: samples, share, the share over train/val/test, the deviation."""
    overall = frame.loc[frame["split"] != "shift", columns].mean() * 100
    rows = []
    for split, group in frame.groupby("split"):
        share = group[columns].mean() * 100
        rows += [
            {"split": split, "class": column.removeprefix("label_"),
             "samples": int(group[column].sum()), "share_pct": float(share[column]),
             "overall_pct": float(overall[column]),
             "deviation_pp": float(share[column] - overall[column])}
            for column in columns
        ]  # fmt: skip
    return pd.DataFrame(rows)


def summarise_split(
    splits: pd.DataFrame, facts: dict, samples: pd.DataFrame, class_names: list[str], params: dict
) -> tuple[dict, pd.DataFrame]:
    """Class shares per split against the whole, largest deviation (percentage points)."""
    frame = samples.merge(splits[["sample_id", "split"]], on="sample_id")
    frame["label_normal"] = (frame["labels"].map(len) == 0).astype(int)
    columns = [f"label_{c}" for c in class_names] + ["label_normal"]
    table = _share_table(frame, columns)
    core = table[table["split"] != "shift"]
    shift_groups = set(frame.loc[frame["split"] == "shift", "group_id"])
    core_groups = frame.loc[frame["split"] != "shift", ["group_id", "split"]]
    report = {
        **parse_block(SplitParams, params).model_dump(include={"ratios", "seed", "candidates"}),
        "samples_by_split": {str(k): int(v) for k, v in frame["split"].value_counts().items()},
        "groups_by_split": {
            str(k): int(v) for k, v in frame.groupby("split")["group_id"].nunique().items()
        },
        "max_abs_deviation_pp": float(core["deviation_pp"].abs().max()),
        "max_abs_deviation_pp_by_class": {
            str(k): float(v)
            for k, v in core.groupby("class")["deviation_pp"].apply(lambda d: d.abs().max()).items()
        },
        "groups_in_two_splits": int((core_groups.groupby("group_id")["split"].nunique() > 1).sum()),
        "shift_groups_also_in_train_val_test": len(
            shift_groups & set(frame.loc[frame["split"] != "shift", "group_id"])
        ),
        **facts,
    }
    return report, table


def plot_split(table: pd.DataFrame) -> Figure:
    """Class share per split next to the overall share."""
    pivot = table.pivot(index="class", columns="split", values="share_pct")
    overall = table.groupby("class")["overall_pct"].first()
    fig = Figure(figsize=(8, 4), layout="tight")
    ax = fig.subplots()
    pivot.assign(overall=overall).plot.bar(ax=ax)
    ax.set(ylabel="% of samples", title="class share per split")
    return fig
