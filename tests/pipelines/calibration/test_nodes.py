"""The calibration node fits on validation rows only and improves an overconfident model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.ml.serving.identity import model_identity
from anomaly_lens.pipelines.calibration.nodes import calibrate, plot_reliability
from tests.conftest import base_parameters

CLASSES = ["a", "b", "c"]


def predictions(label_type: str, per_view: bool = False, n: int = 1500, seed: int = 0):
    """Overconfident predictions (logits x 3) of targets drawn from the true logits."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, len(CLASSES)))
    if label_type == "multiclass":
        true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        targets = np.eye(len(CLASSES))[[rng.choice(len(CLASSES), p=p) for p in true]]
        sharp = np.exp(3 * logits)
        probs = sharp / sharp.sum(1, keepdims=True)
    else:
        targets = (rng.random((n, len(CLASSES))) < 1 / (1 + np.exp(-logits))).astype(float)
        probs = 1 / (1 + np.exp(-3 * logits))
    split = np.where(np.arange(n) % 2 == 0, "val", "test")
    sample_ids = [f"s{i // 2 if per_view else i}-{split[i]}" for i in range(n)]
    frame = pd.DataFrame({"split": split, "sample_id": sample_ids, "item_id": range(n)})
    for k, name in enumerate(CLASSES):
        frame[f"prob_{name}"] = probs[:, k].astype(np.float32)
        frame[f"target_{name}"] = targets[:, k].astype(np.uint8)
    model = ModelBundle(  # its identity hashes the config and the (here empty) weights
        config={"seed": seed},
        state_dict={},
        classes=CLASSES,
        label_type=label_type,
        views=["x"],
        per_view=per_view,
        image_size=8,
    )
    return frame, model


@pytest.mark.parametrize("label_type", ["multilabel", "multiclass"])
def test_calibration_lowers_the_test_ece(label_type):
    frame, model = predictions(label_type)
    calibrator, report, mlflow_metrics = calibrate(frame, model, base_parameters()["calibration"])
    assert report["ece_after"] < report["ece_before"] / 2
    assert report["nll_after"] < report["nll_before"]
    assert all(2.5 < t < 3.5 for t in calibrator["temperature"])  # the x3 sharpening undone
    assert mlflow_metrics["ece_after"]["value"] == report["ece_after"]
    assert (calibrator["thresholds"] is None) == (label_type == "multiclass")
    assert calibrator["model_id"] == model_identity(model)  # what inference checks
    assert isinstance(plot_reliability(frame, calibrator), Figure)


def test_test_rows_never_enter_the_fit():
    frame, model = predictions("multilabel")
    params = base_parameters()["calibration"]
    calibrator, _, _ = calibrate(frame, model, params)
    scrambled = frame.copy()
    test = scrambled["split"] == "test"
    scrambled.loc[test, "target_a"] = 1 - scrambled.loc[test, "target_a"]
    scrambled.loc[test, "prob_b"] = 0.5
    again, report, _ = calibrate(scrambled, model, params)
    assert again == calibrator  # temperatures and thresholds depend on val rows alone
    assert report["fitted_on"] == {"split": "val", "n": int((~test).sum())}


def test_per_view_models_are_reported_per_photo_and_per_sample():
    frame, model = predictions("multilabel", per_view=True)
    _, report, _ = calibrate(frame, model, base_parameters()["calibration"])
    assert {"photo", "sample"} <= set(report) and report["threshold_level"] == "sample"
    assert report["photo"]["after"]["ece"] < report["photo"]["before"]["ece"]
    assert "test_macro_f1_at_thresholds" in report
