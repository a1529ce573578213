import numpy as np
import pytest
import torch

from anomaly_lens.ml.evaluation.metrics import (
    bootstrap_interval,
    classification_metrics,
    json_safe,
    segmentation_metrics,
    segmentation_stats,
    segmentation_summary,
)

CLASSES = ["a", "b"]


def test_multilabel_metrics_by_hand():
    targets = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 0]])
    probs = torch.tensor([[0.9, 0.2], [0.8, 0.3], [0.1, 0.7], [0.6, 0.1]])
    m = classification_metrics(probs, targets, CLASSES)
    # a: tp 2, fp 1, fn 0 -> P 2/3, R 1, F1 0.8 ; b: tp 1, fn 1 -> P 1, R 0.5, F1 2/3
    assert m["per_class"]["a"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["recall"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["confusion"]["a"] == {"tp": 2, "fp": 1, "tn": 1, "fn": 0}
    assert m["hamming_loss"] == pytest.approx(2 / 8)
    assert m["per_class"]["a"]["auroc"] == pytest.approx(1.0)
    assert m["support"] == {"a": 2.0, "b": 2.0}


def test_multiclass_metrics_and_confusion_matrix():
    targets = torch.eye(3)[[0, 1, 2, 2]]
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    m = classification_metrics(probs, targets, ["x", "y", "z"], label_type="multiclass")
    assert m["confusion"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    with pytest.raises(ValueError, match="label_type"):
        classification_metrics(probs, targets, ["x", "y", "z"], label_type="ordinal")


def test_segmentation_metrics_by_hand():
    masks = torch.zeros(1, 2, 2, 2)
    masks[0, 0, 0] = 1  # class a: top row
    probs = torch.zeros(1, 2, 2, 2)
    probs[0, 0, 0, 0] = 0.9  # one of two right, no false positive -> IoU 0.5, Dice 2/3
    m = segmentation_metrics(probs, masks, CLASSES)
    assert m["per_class"]["a"]["iou"] == pytest.approx(0.5)
    assert m["per_class"]["a"]["dice"] == pytest.approx(2 / 3)
    assert m["mean_iou"] == pytest.approx(0.5)  # b has no pixels and is not averaged
    assert m["pixel_accuracy"] == pytest.approx((3 / 4 + 1) / 2)
    assert m["defect_iou"] == pytest.approx(0.5)


def test_defect_iou_ignores_the_class_and_stats_add_up_over_images():
    masks = torch.zeros(2, 2, 4, 4)
    masks[0, 0, :2] = 1  # image 0: 8 pixels of class a
    probs = torch.zeros(2, 2, 4, 4)
    probs[0, 1, :2] = 0.9  # found, but called b: class IoU 0, defect IoU 1
    probs[1, 0, 0, :2] = 0.8  # image 1 has no defect: 2 false positives
    m = segmentation_metrics(probs, masks, CLASSES)
    assert m["per_class"]["a"]["iou"] == 0 and m["defect_iou"] == pytest.approx(8 / 10)
    stats = segmentation_stats(probs, masks)
    assert stats.shape == (2, 3, 4)
    assert segmentation_summary(stats[[0]], CLASSES)["defect_iou"] == pytest.approx(1.0)
    assert segmentation_summary(stats, CLASSES) == m


def test_bootstrap_interval_brackets_the_estimate():
    values = np.random.default_rng(0).normal(10, 1, 500)
    low, high = bootstrap_interval(lambda idx: float(values[idx].mean()), len(values), rounds=300)
    assert low < values.mean() < high and high - low < 0.5


def test_json_safe_reports():
    assert json_safe({"a": [float("nan"), 1.0], "b": {"c": float("inf")}, "d": "x"}) == {
        "a": [None, 1.0],
        "b": {"c": None},
        "d": "x",
    }
