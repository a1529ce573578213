"""Temperature scaling, calibration metrics and decision thresholds.

No Kedro. Works on probabilities (what evaluation and inference produce, TTA included):
for sigmoid outputs the logit is ``log(p / (1 - p))``; for softmax outputs ``log p``
differs from the logits by a per-row constant, which softmax ignores, so scaling
``log p`` by ``1 / T`` is exactly temperature scaling. ECE and MCE come from torchmetrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics.functional.classification as tmc
from sklearn.metrics import precision_recall_curve

CALIBRATION_BINS = 15  # equal-width confidence bins of ECE and MCE
EPS = 1e-7


def logits_of(probs: torch.Tensor, label_type: str) -> torch.Tensor:
    """Logits that give back ``probs`` (up to a per-row constant for softmax)."""
    probs = probs.double().clamp(EPS, 1 - EPS)
    return probs.log() if label_type == "multiclass" else probs.log() - (1 - probs).log()


def scaled_probabilities(
    probs: torch.Tensor, temperature: torch.Tensor, label_type: str
) -> torch.Tensor:
    """``probs`` with their logits divided by ``temperature`` (one, or one per class)."""
    logits = logits_of(probs, label_type) / temperature.double()
    out = logits.softmax(1) if label_type == "multiclass" else logits.sigmoid()
    return out.float()


def fit_temperature(
    probs: torch.Tensor, targets: torch.Tensor, label_type: str, per_class: bool = True
) -> torch.Tensor:
    """Temperatures minimising the NLL of ``targets`` (LBFGS on log T).

    Multi-class: one temperature. Multi-label: one per class (``per_class``) or one shared.
    Predictions that ``separated`` perfectly carry no calibration signal (their NLL falls
    without bound as T -> 0, which would make every prediction certain): a multi-label
    class separated here takes the temperature of the others (shared) and keeps 1 where
    all are; a multi-class model whose every prediction here is right keeps 1.
    """
    informative = ~separated(probs, targets, label_type)
    temperature = torch.ones(targets.shape[1] if label_type == "multilabel" and per_class else 1)
    if not informative.any():
        return temperature
    if label_type == "multiclass":
        return _fit_log_temperature(logits_of(probs, label_type), targets, label_type, 1).exp()
    logits = logits_of(probs[:, informative], label_type)
    shared = _fit_log_temperature(logits, targets[:, informative], label_type, 1).exp()
    if not per_class:
        return shared
    temperature[:] = shared
    temperature[informative] = _fit_log_temperature(
        logits, targets[:, informative], label_type, int(informative.sum())
    ).exp()
    return temperature


def separated(probs: torch.Tensor, targets: torch.Tensor, label_type: str) -> torch.Tensor:
    """Per class (multi-label), or one flag (multi-class): True where the predictions
    separate the targets perfectly (or one target value is absent)."""
    if label_type == "multiclass":
        return (probs.argmax(1) == targets.argmax(1)).all().reshape(1)
    positive = targets > 0.5
    lowest_positive = torch.where(positive, probs, torch.inf).min(0).values
    highest_negative = torch.where(positive, -torch.inf, probs).max(0).values
    return lowest_positive > highest_negative


def _fit_log_temperature(
    logits: torch.Tensor, targets: torch.Tensor, label_type: str, n: int
) -> torch.Tensor:
    log_t = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _nll(logits / log_t.exp(), targets.double(), label_type)
        loss.backward()
        return loss

    optimizer.step(nll)
    return log_t.detach().float()


def _nll(logits: torch.Tensor, targets: torch.Tensor, label_type: str) -> torch.Tensor:
    if label_type == "multiclass":
        return F.cross_entropy(logits, targets.argmax(1))
    return F.binary_cross_entropy_with_logits(logits, targets)


def calibration_summary(
    probs: torch.Tensor,
    targets: torch.Tensor,
    label_type: str,
    classes: Sequence[str] | None = None,
) -> dict:
    """ECE and MCE (15 equal-width bins), Brier score and NLL.

    Multi-class: top-label ECE/MCE over the predicted class's confidence; Brier is the
    squared error summed over classes, averaged over samples. Multi-label: each class is a
    binary problem (its ECE/MCE over the probability of the positive class); the figures
    are the means over classes, also given per class.
    """
    probs, targets = probs.float(), targets.float()
    nll = float(_nll(logits_of(probs, label_type), targets.double(), label_type))
    if label_type == "multiclass":
        labels = targets.argmax(1)
        k = probs.shape[1]
        ece = tmc.multiclass_calibration_error(probs, labels, k, CALIBRATION_BINS, norm="l1")
        mce = tmc.multiclass_calibration_error(probs, labels, k, CALIBRATION_BINS, norm="max")
        brier = ((probs - targets) ** 2).sum(1).mean()
        return {"ece": float(ece), "mce": float(mce), "brier": float(brier), "nll": nll}
    per_class = [
        {
            "ece": float(tmc.binary_calibration_error(p, t.int(), CALIBRATION_BINS, norm="l1")),
            "mce": float(tmc.binary_calibration_error(p, t.int(), CALIBRATION_BINS, norm="max")),
            "brier": float(((p - t) ** 2).mean()),
        }
        for p, t in zip(probs.T, targets.T, strict=True)
    ]
    mean = {key: float(np.mean([c[key] for c in per_class])) for key in ("ece", "mce", "brier")}
    names = classes or [str(k) for k in range(len(per_class))]
    return {**mean, "nll": nll, "per_class": dict(zip(names, per_class, strict=True))}


def tune_thresholds(
    probs: np.ndarray, targets: np.ndarray, rule: str = "f1", targets_by_class: Sequence = ()
) -> list[float]:
    """One decision threshold per class, chosen on these (validation) predictions.

    ``rule`` ``f1``: maximum F1. ``precision`` / ``recall``: the lowest / highest cut whose
    precision / recall reaches the class's value in ``targets_by_class``. The threshold is
    halfway between the chosen cut (a score) and the next lower score, so that it keeps a
    margin on both sides. A class without positives keeps 0.5.
    """
    thresholds = []
    for k in range(probs.shape[1]):
        y, p = targets[:, k], probs[:, k]
        if y.sum() == 0 or y.sum() == len(y):
            thresholds.append(0.5)
            continue
        precision, recall, cuts = precision_recall_curve(y, p)
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        if rule == "f1":
            f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
            cut = cuts[int(np.argmax(f1))]
        elif rule == "precision":
            reached = np.flatnonzero(precision >= targets_by_class[k])
            cut = cuts[reached[0]] if len(reached) else None
        elif rule == "recall":
            reached = np.flatnonzero(recall >= targets_by_class[k])
            cut = cuts[reached[-1]] if len(reached) else None
        else:
            raise ValueError(f"threshold rule must be f1, precision or recall, not {rule!r}")
        if cut is None:  # the goal is out of reach: decide nothing (precision) or all (recall)
            thresholds.append(1.0 if rule == "precision" else 0.0)
            continue
        below = p[p < cut]
        thresholds.append(float((cut + below.max()) / 2) if len(below) else float(cut / 2))
    return thresholds


@dataclass(frozen=True)
class Calibrator:
    """What inference applies: temperatures, then per-class thresholds (multi-label), which
    decide samples (for per-view models, the mean of a sample's calibrated photos)."""

    classes: list[str]
    label_type: str
    temperature: list[float]
    thresholds: list[float] | None  # None: multi-class decides by the most probable class
    model_id: str | None = None  # the model it was fitted for (ml.serving.identity); None: older

    def apply(self, probs: np.ndarray) -> np.ndarray:
        temperature = torch.tensor(self.temperature)
        return scaled_probabilities(torch.from_numpy(probs), temperature, self.label_type).numpy()

    def to_dict(self) -> dict:
        return asdict(self)
