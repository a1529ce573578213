"""Temperature scaling recovers known temperatures; ECE is the textbook 15-bin figure;
thresholds follow their rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly_lens.ml.evaluation.calibration import (
    Calibrator,
    calibration_summary,
    fit_temperature,
    scaled_probabilities,
    tune_thresholds,
)


def logits(n=6000, k=3, seed=0):
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 3


def test_temperature_scaling_recovers_the_temperature_used_to_sharpen():
    z = logits()
    generator = torch.Generator().manual_seed(1)
    multilabel_targets = torch.bernoulli(torch.sigmoid(z), generator=generator)
    sharpened = torch.sigmoid(z * torch.tensor([2.0, 0.5, 3.0]))  # true T = 2, 0.5, 3
    found = fit_temperature(sharpened, multilabel_targets, "multilabel")
    assert torch.allclose(found, torch.tensor([2.0, 0.5, 3.0]), rtol=0.1)
    classes = torch.distributions.Categorical(logits=z).sample()
    one_hot = torch.eye(3)[classes]
    found = fit_temperature(torch.softmax(z * 2.5, 1), one_hot, "multiclass")
    assert found.shape == (1,) and abs(float(found) - 2.5) < 0.25


def test_a_class_without_positives_takes_the_shared_temperature():
    z = logits()
    targets = torch.bernoulli(torch.sigmoid(z), generator=torch.Generator().manual_seed(1))
    targets[:, 2] = 0  # no positive of class 2: its own NLL would push T towards 0
    found = fit_temperature(torch.sigmoid(z * 2), targets, "multilabel")
    shared = fit_temperature(torch.sigmoid(z * 2), targets, "multilabel", per_class=False)
    assert float(found[2]) == pytest.approx(float(shared)) and float(found[2]) > 0.5


def textbook_ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Sum over equal-width bins of (share of samples) x |accuracy - mean confidence|."""
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def test_ece_is_the_textbook_figure():
    z = logits(2000)
    targets = torch.eye(3)[torch.distributions.Categorical(logits=z).sample()]
    probs = torch.softmax(z * 2, 1)
    summary = calibration_summary(probs, targets, "multiclass")
    p = probs.numpy()
    expected = textbook_ece(p.max(1), p.argmax(1) == targets.argmax(1).numpy())
    assert summary["ece"] == pytest.approx(expected, abs=1e-4)
    binary = calibration_summary(torch.sigmoid(z), (z > 0).float(), "multilabel", list("abc"))
    p = torch.sigmoid(z).numpy()[:, 0]
    # torchmetrics bins the positive-class probability for binary problems
    assert binary["per_class"]["a"]["ece"] == pytest.approx(
        textbook_ece(p, (z[:, 0] > 0).numpy()), abs=1e-4
    )


def test_scaling_lowers_the_ece_of_an_overconfident_model():
    z = logits(3000)
    targets = torch.eye(3)[torch.distributions.Categorical(logits=z).sample()]
    probs = torch.softmax(z * 3, 1)
    temperature = fit_temperature(probs, targets, "multiclass")
    after = scaled_probabilities(probs, temperature, "multiclass")
    before_ece = calibration_summary(probs, targets, "multiclass")["ece"]
    assert calibration_summary(after, targets, "multiclass")["ece"] < before_ece / 3


def test_thresholds_follow_their_rule_with_a_margin():
    """Each threshold lies halfway between the chosen cut and the next lower score."""
    probs = np.array([[0.1], [0.2], [0.35], [0.4], [0.6], [0.7], [0.8], [0.9]])
    targets = np.array([[0], [0], [1], [0], [1], [1], [0], [1]])
    # cut 0.35: recall 1, precision 4/6, F1 0.8 (the best); next lower score 0.2
    assert tune_thresholds(probs, targets, "f1") == [pytest.approx(0.275)]
    # cut 0.6: precision 3/4 and recall 3/4; next lower score 0.4
    assert tune_thresholds(probs, targets, "precision", [0.75]) == [pytest.approx(0.5)]
    assert tune_thresholds(probs, targets, "recall", [0.75]) == [pytest.approx(0.5)]
    assert tune_thresholds(probs, targets, "precision", [1.01]) == [1.0]  # out of reach
    assert tune_thresholds(probs, np.zeros_like(targets), "f1") == [0.5]  # no positives


def test_perfectly_separated_predictions_keep_their_temperature():
    """A validation split that a class separates perfectly has no calibration signal:
    fitting would drive T to 0 and make every prediction certain."""
    z = logits(2000)
    targets = torch.bernoulli(torch.sigmoid(z), generator=torch.Generator().manual_seed(1))
    probs = torch.sigmoid(z * 2)
    probs[:, 1] = torch.where(targets[:, 1] > 0, 0.8, 0.3)  # class 1: perfectly separated
    found = fit_temperature(probs, targets, "multilabel")
    shared = fit_temperature(probs[:, [0, 2]], targets[:, [0, 2]], "multilabel", False)
    assert float(found[1]) == pytest.approx(float(shared))
    right = torch.eye(3)[torch.tensor([0, 1, 2, 1])]
    assert float(fit_temperature(right * 0.8 + 0.05, right, "multiclass")) == 1.0


def test_calibrator_applies_its_temperatures():
    calibrator = Calibrator(["a", "b"], "multilabel", [2.0, 1.0], [0.4, 0.6])
    probs = np.array([[0.9, 0.9]], dtype=np.float32)
    applied = calibrator.apply(probs)
    assert applied[0, 1] == pytest.approx(0.9) and 0.5 < applied[0, 0] < 0.9
