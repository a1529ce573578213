"""What an anomaly detector is scored on and how: the images of a split as items (one per
present view), the threshold set on validation, image and pixel metrics with
group-bootstrap intervals (scikit-learn, which reads raw scores as they are; AUPRO from
anomalib). No Kedro."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from anomalib.metrics.aupro import _AUPRO
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.evaluation.calibration import tune_thresholds
from anomaly_lens.ml.evaluation.metrics import bootstrap_interval

THRESHOLD_RULES = ("auto", "best_f1", "normal_quantile")


@dataclass
class Items:
    """The present view images of some samples: pixels, defect masks (any class), whether
    the sample is anomalous (has a label), and its sample, view and unit of splitting."""

    images: np.ndarray  # (M, S, S) uint8
    masks: np.ndarray  # (M, S, S) bool
    anomalous: np.ndarray  # (M,) bool
    sample_ids: np.ndarray  # (M,) str
    views: np.ndarray  # (M,) str
    groups: np.ndarray  # (M,) unit of splitting


def split_items(cache: ImageCache, splits: pd.DataFrame, part: str, views: list[str]) -> Items:
    """The items of split ``part``, in split-table order, views in ``views`` order."""
    rows = splits[splits["split"] == part]
    positions = cache.positions(rows["sample_id"].tolist())
    view_index = [cache.views.index(v) for v in views]
    present = cache.view_mask[positions][:, view_index]
    sample_of, view_of = np.nonzero(present)
    chosen, columns = positions[sample_of], np.asarray(view_index)[view_of]
    units = rows["unit_id" if "unit_id" in rows else "group_id"].to_numpy()
    return Items(
        images=cache.images[chosen, columns],
        masks=cache.masks[chosen, columns].any(1),
        anomalous=cache.labels[chosen].sum(1) > 0,
        sample_ids=cache.sample_ids[chosen].astype(str),
        views=np.asarray(views)[view_of],
        groups=units[sample_of],
    )


def choose_threshold(
    scores: np.ndarray, anomalous: np.ndarray, rule: str, normal_kept: float
) -> tuple[float, str]:
    """The image threshold from validation scores, and the rule that set it. ``best_f1``:
    the score that maximises F1 (needs anomalous and normal images); ``normal_quantile``:
    the ``normal_kept`` quantile of normal scores (for users without defect samples);
    ``auto``: ``best_f1`` where validation has both kinds, else ``normal_quantile``."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold rule must be one of {THRESHOLD_RULES}, not {rule!r}")
    both = anomalous.any() and (~anomalous).any()
    if rule == "best_f1" and not both:
        raise ValueError("best_f1 needs anomalous and normal validation images")
    if rule == "normal_quantile" or (rule == "auto" and not both):
        if not (~anomalous).any():
            raise ValueError("no normal validation image to set the threshold on")
        value = float(np.quantile(scores[~anomalous], normal_kept))
        return value, f"{normal_kept:.0%} of normal validation images below it"
    # the calibration's rule: halfway below the best F1's lowest flagged score
    (value,) = tune_thresholds(scores[:, None], anomalous[:, None].astype(int), "f1")
    return value, "best F1 on validation images"


def image_metrics(
    scores: np.ndarray,
    anomalous: np.ndarray,
    threshold: float,
    groups: np.ndarray,
    rounds: int = 200,
    seed: int = 0,
) -> dict:
    """AUROC, AUPR and F1 at ``threshold``, each with a percentile interval over bootstrap
    draws of whole groups (images of a part are not independent)."""
    flagged = scores > threshold
    metrics = {
        "auroc": lambda i: roc_auc_score(anomalous[i], scores[i]),
        "aupr": lambda i: average_precision_score(anomalous[i], scores[i]),
        "f1": lambda i: f1_score(anomalous[i], flagged[i], zero_division=0.0),
    }
    report = {"n": int(len(scores)), "n_anomalous": int(anomalous.sum())}
    if not (anomalous.any() and (~anomalous).any()):
        return {**report, "reason": "needs anomalous and normal images"}
    everything = np.arange(len(scores))
    for name, metric in metrics.items():

        def value(i, metric=metric):
            both = anomalous[i].any() and not anomalous[i].all()
            return float(metric(i)) if both else float("nan")

        report[name] = value(everything)
        interval = bootstrap_interval(value, len(scores), rounds, seed, groups=groups)
        report[f"{name}_interval"] = list(interval)
    report["flagged_share"] = float(flagged.mean())
    return report


def pixel_metrics(maps: np.ndarray, masks: np.ndarray, anomalous: np.ndarray, fpr_limit=0.3):
    """Pixel AUROC and AUPRO (up to ``fpr_limit``) over normal images and the anomalous
    images that have a mask (one without a mask would count its defect as normal pixels)."""
    has_mask = masks.reshape(len(masks), -1).any(1)
    kept = ~anomalous | has_mask
    if not has_mask.any():
        return {"reason": "no defect masks among these images"}
    preds, target = maps[kept], masks[kept]
    low, high = float(preds.min()), float(preds.max())
    aupro = _AUPRO(fpr_limit=fpr_limit)  # reads scores in [0, 1]: rescaled (same order)
    aupro.update(torch.from_numpy((preds - low) / max(high - low, 1e-12)), torch.from_numpy(target))
    return {
        "pixel_auroc": float(roc_auc_score(target.reshape(-1), preds.reshape(-1))),
        "aupro": float(aupro.compute()),
        "aupro_fpr_limit": fpr_limit,
        "n_images": int(kept.sum()),
        "n_with_mask": int(has_mask.sum()),
    }


def per_sample(scores: np.ndarray, items: Items) -> pd.DataFrame:
    """A sample's score is its highest view score (a defect shows in some views only)."""
    frame = pd.DataFrame(
        {
            "sample_id": items.sample_ids,
            "score": scores,
            "anomalous": items.anomalous,
            "group": items.groups,
        }
    )
    return frame.groupby("sample_id", sort=False).agg(
        score=("score", "max"), anomalous=("anomalous", "first"), group=("group", "first")
    )


def evaluate_detector(
    detector, parts: dict[str, Items], rounds: int, seed: int, fpr_limit: float
) -> tuple[pd.DataFrame, dict]:
    """Every item's score and flag, and per part: image metrics per sample (its highest
    view: the headline) and per image, and pixel metrics."""
    rows, report = [], {}
    for part, items in parts.items():
        scores, maps = detector.score(items.images)
        rows.append(
            pd.DataFrame(
                {
                    "sample_id": items.sample_ids,
                    "view": items.views,
                    "split": part,
                    "score": scores,
                    "flagged": detector.flag(scores),
                    "anomalous": items.anomalous,
                }
            )
        )
        samples = per_sample(scores, items)
        report[part] = {
            "per_sample": image_metrics(
                samples["score"].to_numpy(),
                samples["anomalous"].to_numpy(),
                detector.threshold,
                samples["group"].to_numpy(),
                rounds,
                seed,
            ),
            "per_image": image_metrics(
                scores, items.anomalous, detector.threshold, items.groups, rounds, seed
            ),
            "pixel": pixel_metrics(maps, items.masks, items.anomalous, fpr_limit),
        }
    return pd.concat(rows, ignore_index=True), report
