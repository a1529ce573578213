"""Group-aware, multi-label stratified train/val/test (and k-fold) splits without leakage."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class LeakageError(AssertionError):
    """A group or a content hash was found in two splits."""


def _union_find(items):
    parent = {x: x for x in items}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    return find, union


def merge_groups_sharing_content(
    group_of_sample: pd.Series,
    hashes_of_sample: pd.Series,
    near_duplicates: Sequence[tuple[int, int]] = (),
) -> pd.Series:
    """Unit of splitting per sample: groups joined when their images share content.

    ``hashes_of_sample`` holds a list of exact content hashes per sample (same index);
    ``near_duplicates`` are pairs of sample positions whose images look the same (e.g. a
    tile re-captured). Joined groups always land in the same split.
    """
    groups = group_of_sample.tolist()
    find, union = _union_find(set(groups))
    owner: dict[str, str] = {}
    for group, hashes in zip(groups, hashes_of_sample, strict=True):
        for digest in hashes:
            union(group, owner.setdefault(digest, group))
    for i, j in near_duplicates:
        union(groups[i], groups[j])
    return pd.Series([find(g) for g in groups], index=group_of_sample.index)


def _stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) with the held-out share of each label close to ``fraction``."""
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    kept, held = next(splitter.split(np.zeros(len(labels)), labels))
    return kept, held


def _split_units(
    matrix: np.ndarray, ratios: Sequence[float], seed: int, given_test: np.ndarray | None
) -> np.ndarray:
    """One stratified assignment of units: the split of each unit. Units flagged in
    ``given_test`` are the test split as given; the rest are drawn into train and val."""
    train, val, test = ratios
    if given_test is None:
        rest, held_test = _stratified_holdout(matrix, test, seed)
    else:
        rest, held_test = np.flatnonzero(~given_test), np.flatnonzero(given_test)
    split = np.full(len(matrix), "train", dtype=object)
    split[held_test] = "test"
    if val > 0:
        _, held_val = _stratified_holdout(matrix[rest], val / (train + val), seed + 1)
        split[rest[held_val]] = "val"
    return split


def share_deviation(label_matrix: np.ndarray, parts: np.ndarray) -> float:
    """Largest gap (percentage points) between a class's share in a part and overall."""
    overall = label_matrix.mean(axis=0)
    return max(
        float(np.abs(label_matrix[parts == part].mean(axis=0) - overall).max() * 100)
        for part in np.unique(parts)
    )


def _unit_labels(units: pd.Series, label_matrix: np.ndarray):
    """Sample rows with a "no label" column, one aggregated row per unit, each sample's unit."""
    sample_matrix = np.column_stack([label_matrix, label_matrix.sum(axis=1) == 0]).astype(float)
    unit_frame = pd.DataFrame(sample_matrix, index=units.values).groupby(level=0, sort=True).max()
    position = pd.Series(np.arange(len(unit_frame)), index=unit_frame.index).loc[units].to_numpy()
    return sample_matrix, unit_frame.to_numpy(), position


def assign_folds(
    units: pd.Series, label_matrix: np.ndarray, folds: int, seed: int, candidates: int = 1
) -> np.ndarray:
    """A fold number (0..folds-1) per row for cross-validation over every row.

    Whole units go to one fold, stratified on their aggregated multi-hot labels like
    ``assign_splits``; of ``candidates`` seeded draws the most balanced one is kept.
    """
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, not {folds}")
    sample_matrix, unit_matrix, position = _unit_labels(units, label_matrix)
    if len(unit_matrix) < folds:
        raise ValueError(f"{len(unit_matrix)} units cannot fill {folds} folds")
    best = None
    for draw in range(candidates):
        kfold = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + draw)
        fold = np.zeros(len(unit_matrix), dtype=int)
        for number, (_, part) in enumerate(kfold.split(np.zeros(len(unit_matrix)), unit_matrix)):
            fold[part] = number
        score = share_deviation(sample_matrix, fold[position])
        if best is None or score < best[0]:
            best = (score, fold[position])
    return best[1]


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Train/val/test shares: three, summing to 1, with train and test above 0."""
    shares = tuple(float(r) for r in ratios)
    if len(shares) != 3 or not np.isclose(sum(shares), 1.0) or min(shares[0], shares[2]) <= 0:
        raise ValueError(f"expected three shares summing to 1 with train, test > 0, got {shares}")
    return shares


def assign_splits(
    units: pd.Series,
    label_matrix: np.ndarray,
    ratios: Sequence[float],
    seed: int,
    *,
    candidates: int = 1,
    given_test: np.ndarray | None = None,
) -> pd.DataFrame:
    """Split whole units (groups) stratified on their aggregated multi-hot labels.

    ``label_matrix`` is one multi-hot row per sample (same order as ``units``); a unit
    carries a class when any of its samples does, and a "no label" column keeps normal
    samples stratified too. ``ratios`` are train/val/test shares (cross-validation draws
    its own folds: ``assign_folds``). Since units hold several samples, the
    unit-level stratification is drawn ``candidates`` times (seeds ``seed, seed+1, ...``)
    and the draw whose sample-level class shares deviate least from the whole is kept.
    ``given_test`` (a flag per sample) honours a data set's own test split instead: a
    unit with any flagged sample is test, whole; train and val keep their shares' ratio.
    Returns ``split`` per sample, in the input order.
    """
    ratios = check_ratios(ratios)
    if candidates < 1:
        raise ValueError("candidates must be at least 1")
    sample_matrix, unit_matrix, position = _unit_labels(units, label_matrix)
    unit_test = None
    if given_test is not None:
        flags = pd.Series(np.asarray(given_test, dtype=bool), index=units.values)
        unit_test = flags.groupby(level=0, sort=True).any().to_numpy()
    best = None
    for draw in range(candidates):
        split = _split_units(unit_matrix, ratios, seed + draw, unit_test)
        score = share_deviation(sample_matrix, split[position].astype(str))
        if best is None or score < best[0]:
            best = (score, split)
    return pd.DataFrame({"split": best[1][position]})


def ids_by_split(splits: pd.DataFrame, parts: Sequence[str] = SPLITS) -> dict[str, list[str]]:
    """The sample ids of each split of a split table."""
    return {part: splits.loc[splits["split"] == part, "sample_id"].tolist() for part in parts}


def split_identity(splits: pd.DataFrame) -> str:
    """A short hash of which sample is in which split: reports made on one split say so,
    and a report of another split is never shown beside them."""
    rows = splits[["sample_id", "split"]].astype(str).sort_values(["sample_id", "split"])
    text = "\n".join(rows["sample_id"] + "\t" + rows["split"])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def units_of(splits: pd.DataFrame) -> pd.Series:
    """The unit of splitting (group joined with look-alikes) of each sample id."""
    column = "unit_id" if "unit_id" in splits.columns else "group_id"
    return splits.set_index("sample_id")[column]


def assert_no_leakage(frame: pd.DataFrame, column: str, splits: Sequence[str] = SPLITS) -> None:
    """Raise ``LeakageError`` when a value of ``column`` occurs in two of ``splits``.

    ``column`` may hold scalars (a group) or lists (content hashes of a sample).
    """
    values = frame.loc[frame["split"].isin(splits), [column, "split"]].explode(column)
    spread = values.dropna().groupby(column)["split"].nunique()
    leaked = spread[spread > 1]
    if len(leaked):
        raise LeakageError(
            f"{len(leaked)} values of {column!r} occur in two splits, e.g. {leaked.index[:3].tolist()}"
        )


def missing_classes(frame: pd.DataFrame, classes: Sequence[str], units: pd.Series) -> list[str]:
    """Warnings for classes absent from a split although enough units carry them."""
    used = [s for s in SPLITS if (frame["split"] == s).any()]
    warnings = []
    for cls in classes:
        carriers = units[frame[f"label_{cls}"].to_numpy() == 1].nunique()
        for split in used:
            present = frame.loc[frame["split"] == split, f"label_{cls}"].sum()
            if present == 0 and carriers >= len(used):
                warnings.append(
                    f"class {cls!r} has no sample in {split} ({carriers} groups carry it)"
                )
            elif present == 0:
                warnings.append(
                    f"class {cls!r} is missing from {split}: only {carriers} group(s) carry it"
                )
    return warnings
