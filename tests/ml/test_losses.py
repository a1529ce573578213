"""Losses against hand-computed values."""

import math

import pytest
import torch

from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.models import ModelOutput
from anomaly_lens.ml.training.losses import (
    LOSSES,
    MultiTaskLoss,
    check_loss_fits_labels,
    create_loss,
)

LN2 = math.log(2)


def test_registry_has_every_loss():
    assert set(LOSSES) == {"bce", "focal", "dice", "focal_dice", "weighted_ce", "ce"}
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        create_loss("l1")


def test_bce_at_zero_logits_is_ln2_and_pos_weight_scales_positives():
    logits, target = torch.zeros(2, 3), torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    assert create_loss("bce")(logits, target).item() == pytest.approx(LN2)
    weighted = create_loss("bce", pos_weight=[3.0, 1.0, 1.0])(logits, target)
    assert weighted.item() == pytest.approx((3 * LN2 + 5 * LN2) / 6)


def test_focal_by_hand():
    # p = sigmoid(0) = 0.5 for a positive: alpha * (1 - 0.5)^2 * ln 2
    loss = create_loss("focal", alpha=0.25, gamma=2.0)(torch.zeros(1, 1), torch.ones(1, 1))
    assert loss.item() == pytest.approx(0.25 * 0.25 * LN2)
    # gamma 0 and alpha 0.5 is half the BCE
    half = create_loss("focal", alpha=0.5, gamma=0.0)(
        torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    )
    bce = create_loss("bce")(torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]]))
    assert half.item() == pytest.approx(0.5 * bce.item())


def test_dynamic_focal_alpha_favours_rare_classes():
    loss = create_loss("focal", alpha="dynamic", gamma=0.0, class_frequencies=[0.1, 0.5])
    assert torch.allclose(loss.alpha, torch.tensor([0.9, 0.5]))
    positives = loss(torch.zeros(1, 2), torch.ones(1, 2))
    assert positives.item() == pytest.approx((0.9 + 0.5) / 2 * LN2)
    with pytest.raises(ValueError, match="class_frequencies"):
        create_loss("focal", alpha="dynamic")


def test_dice_by_hand():
    target = torch.zeros(1, 1, 2, 2)
    target[..., 0, :] = 1  # half the pixels
    # probabilities 0.5 everywhere: intersection 1, sum 2 + 2 -> dice 0.5 (smooth 0)
    assert create_loss("dice", smooth=0.0)(torch.zeros(1, 1, 2, 2), target).item() == pytest.approx(
        0.5
    )
    perfect = torch.where(target > 0, 20.0, -20.0)
    assert create_loss("dice", smooth=0.0)(perfect, target).item() == pytest.approx(0.0, abs=1e-6)


def test_focal_dice_is_the_weighted_sum():
    logits, target = torch.randn(2, 1, 4, 4), (torch.rand(2, 1, 4, 4) > 0.5).float()
    combined = create_loss(
        "focal_dice", focal_weight=2.0, dice_weight=0.5, alpha=0.25, gamma=2.0, smooth=1.0
    )
    expected = 2.0 * create_loss("focal", alpha=0.25, gamma=2.0)(
        logits, target
    ) + 0.5 * create_loss("dice", smooth=1.0)(logits, target)
    assert combined(logits, target).item() == pytest.approx(expected.item())


def test_weighted_ce_by_hand():
    logits, target = torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert create_loss("weighted_ce")(logits, target).item() == pytest.approx(LN2)
    loss = create_loss("weighted_ce", class_frequencies=[0.75, 0.25])
    assert torch.allclose(loss.weights, torch.tensor([0.5, 1.5]))
    wrong = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # class 0 is missed: ce = ln(1 + e)
    expected = (0.5 * math.log(1 + math.e) + 1.5 * math.log(1 + math.exp(-1))) / 2.0
    assert loss(wrong, target).item() == pytest.approx(expected)
    plain = create_loss("ce", class_frequencies=[0.75, 0.25])  # frequencies ignored
    assert plain(wrong, target).item() == pytest.approx(
        (math.log(1 + math.e) + math.log(1 + math.exp(-1))) / 2.0
    )


def test_multitask_weighted_sum_over_a_model_output():
    batch = Batch(
        torch.zeros(1, 1, 1, 2, 2),
        torch.ones(1, 1, dtype=torch.bool),
        labels=torch.ones(1, 1),
        masks=torch.ones(1, 1, 2, 2),
    )
    output = ModelOutput(logits=torch.zeros(1, 1), seg_logits=torch.zeros(1, 1, 2, 2))
    loss = MultiTaskLoss(create_loss("bce"), create_loss("bce"), 0.3, 0.7)(output, batch)
    assert loss["classification"].item() == pytest.approx(0.3 * LN2)
    assert loss["loss"].item() == pytest.approx(LN2)
    only_cls = MultiTaskLoss(create_loss("bce"), None)(output, batch)
    assert set(only_cls) == {"loss", "classification"}


def test_a_softmax_loss_refuses_sigmoid_outputs():
    """Softmax cross-entropy over one output is 0 whatever the logit: nothing would learn."""
    assert create_loss("ce")(torch.randn(4, 1), torch.ones(4, 1)).item() == 0.0
    with pytest.raises(ValueError, match="'ce' is a softmax loss"):
        check_loss_fits_labels("ce", "multilabel")
    check_loss_fits_labels("ce", "multiclass")
    check_loss_fits_labels("bce", "multilabel")
