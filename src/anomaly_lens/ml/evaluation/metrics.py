"""Evaluation metrics (torchmetrics) for multi-label / multi-class classification and masks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torchmetrics.functional.classification as tmc


def _per_class(values: torch.Tensor, classes: Sequence[str]) -> dict[str, float]:
    return {c: float(v) for c, v in zip(classes, values.tolist(), strict=True)}


def multilabel(
    metric: str,
    probs: torch.Tensor,
    targets: torch.Tensor,
    average: str | None = None,
    **options,
) -> torch.Tensor:
    """torchmetrics' ``multilabel_<metric>`` over the columns of ``(N, K)`` probabilities;
    for one column (a binary model) its ``binary_<metric>``, which torchmetrics requires
    there, shaped as the multi-label result would be (per class: a leading axis of 1)."""
    k = probs.shape[1]
    if k > 1:
        function = getattr(tmc, f"multilabel_{metric}")
        return function(probs, targets, num_labels=k, average=average, **options)
    value = getattr(tmc, f"binary_{metric}")(probs[:, 0], targets[:, 0], **options)
    return value.unsqueeze(0) if average is None else value


def present_macro_f1(per_class_f1: torch.Tensor, targets: torch.Tensor) -> float:
    """The mean F1 over the classes that have a positive in ``targets`` (NaN if none has):
    the bootstrap's statistic, so that a round which happens to leave a rare class out
    does not count it as F1 = 0."""
    present = targets.sum(0) > 0
    return float(per_class_f1[present].mean()) if present.any() else float("nan")


def classification_metrics(
    probs: torch.Tensor,
    targets: torch.Tensor,
    classes: Sequence[str],
    label_type: str = "multilabel",
    threshold: float = 0.5,
) -> dict:
    """Per-class precision/recall/F1/AP/AUROC, macro/micro/weighted F1, balanced accuracy,
    Hamming loss, and a confusion matrix (multi-class) or per-class confusion (multi-label).

    ``probs``: (N, K) sigmoid (multi-label) or softmax (multi-class) outputs; ``targets``:
    (N, K) multi-hot or one-hot.
    """
    k = len(classes)
    targets = targets.int()
    if label_type == "multiclass":
        labels = targets.argmax(1)
        args = {"num_classes": k}
        per = {
            name: fn(probs, labels, average=None, **args)
            for name, fn in (
                ("precision", tmc.multiclass_precision),
                ("recall", tmc.multiclass_recall),
                ("f1", tmc.multiclass_f1_score),
                ("ap", tmc.multiclass_average_precision),
                ("auroc", tmc.multiclass_auroc),
            )
        }
        f1 = {
            avg: float(tmc.multiclass_f1_score(probs, labels, average=avg, **args))
            for avg in ("macro", "micro", "weighted")
        }
        confusion = tmc.multiclass_confusion_matrix(probs, labels, **args).tolist()
        balanced = float(tmc.multiclass_recall(probs, labels, average="macro", **args))
        hamming = float(tmc.multiclass_hamming_distance(probs, labels, average="micro", **args))
    elif label_type == "multilabel":
        per = {
            name: multilabel(name, probs, targets, threshold=threshold)
            for name in ("precision", "recall", "f1_score")
        }
        per["f1"] = per.pop("f1_score")
        per["ap"] = multilabel("average_precision", probs, targets)
        per["auroc"] = multilabel("auroc", probs, targets)
        f1 = {
            avg: float(multilabel("f1_score", probs, targets, avg, threshold=threshold))
            for avg in ("macro", "micro", "weighted")
        }
        stats = multilabel("stat_scores", probs, targets, threshold=threshold)  # tp fp tn fn
        confusion = {
            c: dict(zip(("tp", "fp", "tn", "fn"), map(int, row[:4]), strict=True))
            for c, row in zip(classes, stats, strict=True)
        }
        recall = per["recall"]
        specificity = multilabel("specificity", probs, targets, threshold=threshold)
        balanced = float(((recall + specificity) / 2).mean())
        hamming = float(
            multilabel("hamming_distance", probs, targets, "micro", threshold=threshold)
        )
    else:
        raise ValueError(f"label_type must be 'multilabel' or 'multiclass', not {label_type!r}")
    support = targets.sum(0)
    return {
        "macro_f1": f1["macro"],
        "macro_f1_present": present_macro_f1(per["f1"], targets),
        "micro_f1": f1["micro"],
        "weighted_f1": f1["weighted"],
        "balanced_accuracy": balanced,
        "hamming_loss": hamming,
        "per_class": {
            c: {name: float(values[i]) for name, values in per.items()}
            for i, c in enumerate(classes)
        },
        "confusion": confusion,
        "support": _per_class(support, classes),
    }


PIXEL_COUNTS = ("tp", "fp", "tn", "fn")  # the last axis of ``segmentation_stats``


def segmentation_stats(
    seg_probs: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5
) -> torch.Tensor:
    """Pixel counts per image: (N, K + 1, 4) true/false positives, true/false negatives
    (``PIXEL_COUNTS``) for each class and, last, for any defect against background,
    whatever its class.

    Sums over any subset of images give that subset's scores (``segmentation_summary``),
    which makes bootstrap rounds cheap.
    """
    preds = (seg_probs >= threshold).flatten(2)
    target = (masks > 0.5).flatten(2)
    preds = torch.cat([preds, preds.any(1, keepdim=True)], 1).int()
    target = torch.cat([target, target.any(1, keepdim=True)], 1).int()
    stats = tmc.multilabel_stat_scores(
        preds, target, num_labels=preds.shape[1], average=None, multidim_average="samplewise"
    )
    return stats.reshape(*preds.shape[:2], -1)[..., :4]  # one image comes back squeezed


def segmentation_summary(stats: torch.Tensor, classes: Sequence[str]) -> dict:
    """IoU and Dice per class (over all pixels of the images) and their means, pixel
    accuracy, and ``defect_iou`` (any defect against background) from ``segmentation_stats``."""
    tp, fp, tn, fn = stats.sum(0).double().unbind(-1)
    iou = tp / (tp + fp + fn).clamp_min(1)
    dice = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
    present = ((tp + fn) > 0)[:-1]
    defect_seen = bool(tp[-1] + fp[-1] + fn[-1] > 0)
    return {
        "defect_iou": float(iou[-1]) if defect_seen else float("nan"),
        "mean_iou": float(iou[:-1][present].mean()) if present.any() else float("nan"),
        "mean_dice": float(dice[:-1][present].mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(((tp + tn) / (tp + fp + tn + fn))[:-1].mean()),
        "per_class": {
            c: {"iou": float(iou[i]), "dice": float(dice[i])} for i, c in enumerate(classes)
        },
    }


def segmentation_metrics(
    seg_probs: torch.Tensor, masks: torch.Tensor, classes: Sequence[str], threshold: float = 0.5
) -> dict:
    """``segmentation_summary`` of (N, K, H, W) mask probabilities against 0/1 masks."""
    return segmentation_summary(segmentation_stats(seg_probs, masks, threshold), classes)


def bootstrap_interval(
    metric: Callable[[np.ndarray], float],
    n: int,
    rounds: int = 200,
    seed: int = 0,
    level: float = 0.95,
    groups: Sequence | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(indices)`` over resampled items.

    With ``groups`` (one label per item, e.g. the tile of each photo) whole groups are
    drawn with replacement and all their items taken, since the items of a group are not
    independent. Rounds whose metric is not finite are left out.
    """
    values = [metric(i) for i in bootstrap_draws(n, rounds, seed, groups)]
    return percentile_interval(values, level)


def bootstrap_draws(
    n: int, rounds: int, seed: int, groups: Sequence | None = None
) -> Iterator[np.ndarray]:
    """``rounds`` resamples of item indices ``0..n-1`` drawn with replacement; with
    ``groups`` (one label per item) whole groups are drawn and all their items taken."""
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(rounds):
            yield rng.integers(0, n, n)
        return
    codes, _ = pd.factorize(pd.Series(list(groups)))
    members = pd.Series(np.arange(n)).groupby(codes).apply(np.asarray).tolist()
    for _ in range(rounds):
        yield np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


def percentile_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite ``values`` (NaN if none)."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def json_safe(value):
    """The same nested report with NaN and infinities (e.g. AP of an absent class) as None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
