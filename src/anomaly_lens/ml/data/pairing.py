"""Group the images of one sample across views into one row per sample."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

SAMPLE_ID_SEPARATOR = "|"


def recover_tiles(
    frame: pd.DataFrame, folder: str, condition: str, number: str, max_gap: int
) -> pd.Series:
    """Tile id per image for captures numbered in the order they were taken.

    Within one ``folder``, images sorted by ``number`` belong to one tile while the
    condition index (``exp<k>`` -> k) increases and the number grows by at most
    ``max_gap``; otherwise a new tile starts. Tile ids are ``<folder>/<first number>``.
    Rows whose condition index is 0 are left out (NaN): they are not part of a sequence.
    """
    k = frame[condition].str.extract(r"(\d+)$", expand=False).astype(int)
    n = frame[number].astype(np.int64)
    tiles = pd.Series(np.nan, index=frame.index, dtype=object)
    order = pd.DataFrame({"folder": frame[folder], "k": k, "n": n}).loc[k > 0]
    for name, group in order.sort_values(["folder", "n"]).groupby("folder", sort=False):
        previous_k, previous_n, start = None, None, None
        for index, row in group.iterrows():
            if previous_k is None or row.k <= previous_k or row.n - previous_n > max_gap:
                start = row.n
            tiles[index] = f"{name}/{start}"
            previous_k, previous_n = row.k, row.n
    return tiles


def _label_conflicts(grouped) -> pd.DataFrame:
    """Per sample and class, the views that carry the label and those that do not, where
    they disagree (the sample keeps the label: union)."""
    rows = []
    for sample_id, group in grouped:
        union = set().union(*map(set, group["labels"]))
        for cls in sorted(union):
            has = group["labels"].map(lambda ls, c=cls: c in ls)
            if not has.all():
                rows.append(
                    (
                        sample_id,
                        cls,
                        sorted(group.loc[has, "view"]),
                        sorted(group.loc[~has, "view"]),
                        "union: label kept",
                    )
                )
    return pd.DataFrame(
        rows, columns=["sample_id", "class", "views_with", "views_without", "resolution"]
    )


def pair_views(
    manifest: pd.DataFrame,
    sample_key: pd.Series,
    group_key: pd.Series,
    views: Sequence[str],
    classes: Sequence[str],
    *,
    keep_columns: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per sample and a table of the label conflicts between its views.

    Views outside ``views`` that occur in the data are appended as extra view columns, so
    no image is dropped; ``keep_columns`` (sample-level fields such as the key parts) are
    carried over from the sample's first image. A sample's labels are the **union** of its views' labels: an
    anomaly seen in any view belongs to the sample (types may be visible in some views
    only). Every sample whose views disagree is listed in the conflicts table.
    """
    frame = manifest.assign(sample_id=sample_key.values, group_id=group_key.values)
    clash = frame.duplicated(["sample_id", "view"], keep=False)
    if clash.any():
        examples = (
            frame.loc[clash, ["sample_id", "view", "image_id"]].head(6).to_string(index=False)
        )
        raise ValueError(f"Several images share a sample and view:\n{examples}")
    all_views = list(views) + sorted(set(frame["view"]) - set(views))
    images = frame.pivot(index="sample_id", columns="view", values="image_id").reindex(
        columns=all_views
    )
    grouped = frame.groupby("sample_id", sort=True)
    samples = pd.DataFrame({"sample_id": images.index})
    samples["group_id"] = grouped["group_id"].first().values
    label_sets = grouped["labels"].agg(lambda ls: sorted(set().union(*map(set, ls))))
    samples["labels"] = label_sets.values
    for cls in classes:
        samples[f"label_{cls}"] = samples["labels"].map(lambda ls, c=cls: int(c in ls))
    for view in all_views:
        samples[f"image_{view}"] = images[view].values
    present = images.notna().to_numpy()
    samples["view_mask"] = [row.astype(int).tolist() for row in present]
    samples["n_views"] = present.sum(axis=1)
    samples["complete"] = present[:, : len(views)].all(axis=1)
    if keep_columns:
        kept = grouped[list(keep_columns)].first().reset_index()
        samples = samples.merge(kept, on="sample_id", how="left")

    return samples, _label_conflicts(grouped)
