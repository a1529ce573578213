"""Predictions of a model on batches, their tables, and their scores with intervals. No Kedro."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.data.cache import (
    MultiViewDataset,
)
from anomaly_lens.ml.evaluation.metrics import (
    PIXEL_COUNTS,
    bootstrap_interval,
    classification_metrics,
    segmentation_stats,
    segmentation_summary,
)
from anomaly_lens.ml.evaluation.tta import orientations
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.ml.training.module import probabilities

logger = logging.getLogger(__name__)


@dataclass
class Predictions:
    """A model's outputs for every item; None where it has no such head (or the batches no
    labels or masks). ``logits`` and ``features`` are those of the images as they are,
    without test-time augmentation: what out-of-distribution detectors score."""

    probs: torch.Tensor | None
    targets: torch.Tensor | None
    seg_probs: torch.Tensor | None
    masks: torch.Tensor | None
    logits: torch.Tensor | None
    features: torch.Tensor | None


@torch.no_grad()
def predict(model: torch.nn.Module, batches: Iterable[Batch], tta: str) -> Predictions:
    """Class and mask probabilities of every item, with its targets and masks; ``tta``
    (``ml.evaluation.tta``: ``none``, ``hflip``, ``d4``) averages the logits over orientations of the
    views. ``logits`` and ``features`` are those of the views as they are."""
    parts: dict[str, list] = {name: [] for name in Predictions.__dataclass_fields__}
    turns = orientations(tta)
    for batch in batches:
        output = model(batch.images, batch.view_mask)
        logits, seg = output.logits, output.seg_logits
        parts["logits"].append(logits)
        parts["features"].append(output.features)
        for turn in turns[1:]:
            turned = model(turn.apply(batch.images), batch.view_mask)
            if logits is not None:
                logits = logits + turned.logits
            if seg is not None:
                seg = seg + turn.undo(turned.seg_logits)
        logits = None if logits is None else logits / len(turns)
        seg = None if seg is None else seg / len(turns)
        if logits is not None:
            parts["probs"].append(probabilities(logits, model.config.label_type))
            parts["targets"].append(batch.labels)
        if seg is not None:
            parts["seg_probs"].append(torch.sigmoid(seg))
            parts["masks"].append(batch.masks)
    return Predictions(
        **{
            name: torch.cat(found) if found and all(x is not None for x in found) else None
            for name, found in parts.items()
        }
    )


def score(
    probs: torch.Tensor | None,
    targets: torch.Tensor | None,
    seg: torch.Tensor | None,
    masks: torch.Tensor | None,
    classes: Sequence[str],
    label_type: str,
    rounds: int,
    seed: int,
    groups: Sequence | None = None,
) -> dict:
    """Classification and segmentation metrics with bootstrap 95 % intervals.

    ``groups`` (one per item, e.g. the tile of a photo) makes the bootstrap resample
    whole groups; see ``metrics.bootstrap_interval``.
    """
    part: dict = {}
    if probs is not None:
        part.update(classification_metrics(probs, targets, classes, label_type))
        part["macro_f1_ci95"] = bootstrap_interval(
            lambda i: classification_metrics(probs[i], targets[i], classes, label_type)[
                "macro_f1_present"
            ],
            len(probs),
            rounds=rounds,
            seed=seed,
            groups=groups,
        )
    if seg is not None:
        part["segmentation"] = segmentation_report(
            segmentation_stats(seg, masks), classes, rounds, seed, groups
        )
    return part


def segmentation_report(
    stats: torch.Tensor,
    classes: Sequence[str],
    rounds: int,
    seed: int,
    groups: Sequence | None = None,
) -> dict:
    """``segmentation_summary`` of per-item pixel counts (``segmentation_stats``) with a
    bootstrap 95 % interval of the mean IoU; ``classes`` may include ``normal``, which has
    no mask."""
    seg_classes = mask_classes(classes)
    summary = segmentation_summary(stats, seg_classes)
    summary["mean_iou_ci95"] = bootstrap_interval(
        lambda i: segmentation_summary(stats[i], seg_classes)["mean_iou"],
        len(stats),
        rounds=rounds,
        seed=seed,
        groups=groups,
    )
    return summary


def mask_classes(classes: Sequence[str]) -> list[str]:
    """The classes that have a mask channel: all but ``normal``."""
    return [c for c in classes if c != "normal"]


def pixel_count_columns(classes: Sequence[str]) -> list[str]:
    """Column names of per-item pixel counts in a prediction table,
    ``pixels_<class>_<tp|fp|tn|fn>``, per mask class and last for ``any_defect``."""
    return [f"pixels_{c}_{k}" for c in [*mask_classes(classes), "any_defect"] for k in PIXEL_COUNTS]


def pixel_count_table(stats: torch.Tensor, classes: Sequence[str]) -> pd.DataFrame:
    """``segmentation_stats`` (N, K + 1, 4) as N rows of ``pixel_count_columns``: additive,
    so pooled or resampled rows give their segmentation scores."""
    return pd.DataFrame(stats.flatten(1).numpy(), columns=pixel_count_columns(classes))


def pixel_counts(table: pd.DataFrame, classes: Sequence[str]) -> torch.Tensor | None:
    """The (N, K + 1, 4) pixel counts of a table's rows; None where it has none."""
    columns = pixel_count_columns(classes)
    if not set(columns) <= set(table.columns):
        return None
    counts = torch.from_numpy(table[columns].to_numpy(np.int64))
    return counts.reshape(len(table), -1, len(PIXEL_COUNTS))


def probability_columns(kind: str, classes: Sequence[str]) -> list[str]:
    """Column names of a prediction table: ``prob_<class>`` or ``target_<class>``."""
    return [f"{kind}_{c}" for c in classes]


def per_sample_table(
    table: pd.DataFrame,
    classes: Sequence[str],
    sort: bool = False,
    first: Sequence[str] = (),
    highest: Sequence[str] = (),
) -> pd.DataFrame:
    """A per-view model's prediction table at sample level, one row per ``sample_id``:
    each class's probability averaged over the sample's photos; its targets (where the
    table has them) and the ``highest`` columns their maximum; ``first`` their first."""
    targets = [c for c in probability_columns("target", classes) if c in table]
    how = (
        dict.fromkeys(probability_columns("prob", classes), "mean")
        | dict.fromkeys([*targets, *highest], "max")
        | dict.fromkeys(first, "first")
    )
    return table.groupby("sample_id", sort=sort).agg(how).reset_index()


def per_photo_table(table: pd.DataFrame, dataset: MultiViewDataset) -> pd.DataFrame:
    """A fused model's prediction table (one row per item of ``dataset``, in its order) as
    one row per present photo, ``item_id`` ``sample/view``, each with its sample's
    prediction: a decision per sample scored per photo. A per-view table is one already."""
    if dataset.per_view:
        return table
    views = dataset.items[0][1] if dataset.items else []
    photos = MultiViewDataset(dataset.cache, dataset.positions, view_index=views, per_view=True)
    rows = pd.Index(dataset.positions).get_indexer(photos.positions)
    item_ids = [photos.item_id(k) for k in range(len(photos))]
    return table.iloc[rows].assign(item_id=item_ids).reset_index(drop=True)


def prediction_table(
    part: str, dataset: MultiViewDataset, probs: torch.Tensor, targets: torch.Tensor, classes
) -> pd.DataFrame:
    """One row per item: part, sample, item (``sample/view`` for per-view), probabilities
    and targets per class."""
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "split": part,
                    "sample_id": dataset.cache.sample_ids[dataset.positions],
                    "item_id": [dataset.item_id(k) for k in range(len(dataset))],
                }
            ),
            pd.DataFrame(probs.numpy(), columns=probability_columns("prob", classes)),
            pd.DataFrame(
                targets.numpy().astype(np.uint8), columns=probability_columns("target", classes)
            ),
        ],
        axis=1,
    )


@dataclass(frozen=True)
class Scoring:
    """How a part is scored: bootstrap rounds and seed, and the unit (specimen, tile) of
    every sample, which the bootstrap resamples whole."""

    rounds: int
    seed: int
    unit_of: pd.Series

    def score(self, probs, targets, seg, masks, classes, label_type, sample_ids) -> dict:
        groups = self.unit_of.loc[sample_ids].to_numpy()
        return score(
            probs, targets, seg, masks, classes, label_type, self.rounds, self.seed, groups
        )


def evaluate_part(
    model: torch.nn.Module,
    loader: Iterable[Batch],
    bundle: ModelBundle,
    tta: str,
    scoring: Scoring,
    part: str,
) -> tuple[dict, pd.DataFrame | None]:
    """Metrics of one part of the data (its items'; and per sample, from the mean of a
    per-view model's photos) and its prediction table (None without class predictions)."""
    dataset, classes, label_type = loader.dataset, bundle.classes, bundle.label_type
    found = predict(model, loader, tta)
    sample_ids = dataset.cache.sample_ids[dataset.positions]
    report = {
        "n_samples": len(dataset),
        **scoring.score(
            found.probs, found.targets, found.seg_probs, found.masks, classes, label_type,
            sample_ids,
        ),
    }  # fmt: skip
    if found.probs is None:
        return report, None
    table = prediction_table(part, dataset, found.probs, found.targets, classes)
    if bundle.per_view:
        samples = per_sample_table(table, classes)
        probs, targets = (
            torch.from_numpy(samples[probability_columns(kind, classes)].to_numpy())
            for kind in ("prob", "target")
        )
        report["per_sample"] = {
            "n_samples": len(samples),
            **scoring.score(probs, targets, None, None, classes, label_type, samples["sample_id"]),
        }
    return report, table
