"""Anomaly detection from normal images only: the methods, the threshold rules, the metrics."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from anomaly_lens.ml.anomaly import METHODS, create_method
from anomaly_lens.ml.anomaly.detector import AnomalyDetector, AnomalyMethodSettings
from anomaly_lens.ml.anomaly.evaluation import choose_threshold, image_metrics, pixel_metrics
from anomaly_lens.ml.anomaly.gate import fold_as_split, gate, gated_probabilities

CELL = 8  # pixels: the stride of the finest feature map (blocks.2) at 64 px
LAYERS = {"patchcore": ["blocks.2", "blocks.4"], "padim": ["blocks.1", "blocks.2", "blocks.4"]}


def textures(n: int, seed: int, size: int = 64) -> np.ndarray:
    """Normal images: smooth random texture around one brightness."""
    rng = np.random.default_rng(seed)
    fields = [ndimage.gaussian_filter(rng.standard_normal((size, size)), 2) for _ in range(n)]
    return np.stack([np.clip(110 + 300 * f, 0, 255).astype(np.uint8) for f in fields])


def with_defects(images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same images, each with a bright scratch somewhere, and the scratches' masks."""
    rng = np.random.default_rng(seed)
    damaged, masks = images.copy(), np.zeros(images.shape, dtype=np.uint8)
    for image, mask in zip(damaged, masks, strict=True):
        x, y = rng.integers(14, 50, 2)
        dx, dy = rng.integers(-7, 8, 2)
        cv2.line(mask, (int(x - dx), int(y - dy)), (int(x + dx), int(y + dy)), 1, 4)
        image[mask > 0] = 250
    return damaged, masks.astype(bool)


@pytest.fixture(scope="module", params=METHODS)
def fitted(request) -> AnomalyDetector:
    settings = AnomalyMethodSettings(layers=LAYERS[request.param], coreset_ratio=0.1)
    detector = AnomalyDetector(
        request.param, "tf_efficientnet_lite0", settings, 64, "stretch", ["default"], "split-a"
    )
    return detector.fit(textures(200, 1))  # PaDiM: a Gaussian per position needs many


def test_the_map_of_a_synthetic_defect_peaks_inside_its_mask(fitted):
    normal = textures(12, 2)
    damaged, masks = with_defects(normal, 3)
    normal_scores, _ = fitted.score(normal)
    scores, maps = fitted.score(damaged)
    assert maps.shape == damaged.shape and fitted.n_train_images == 200
    for heat, mask in zip(maps, masks, strict=True):
        # The map is a grid of stride 8 (blocks.2) upsampled and smoothed: its peak lies in
        # the defect's own cell, and the defect is hotter than the rest on average.
        assert ndimage.distance_transform_edt(~mask).flat[heat.argmax()] <= CELL
        assert heat[mask].mean() > heat[~mask].mean()
    assert scores.min() > normal_scores.max()  # every damaged image outscores every normal one
    found = pixel_metrics(
        np.concatenate([maps, fitted.score(normal)[1]]),
        np.concatenate([masks, np.zeros_like(masks)]),
        np.r_[np.ones(12, bool), np.zeros(12, bool)],
    )
    assert found["pixel_auroc"] > 0.9 and 0.5 < found["aupro"] <= 1.0


def test_the_saved_detector_scores_as_the_fitted_one(fitted):
    images = textures(4, 5)
    again = pickle.loads(pickle.dumps(fitted))
    assert again._model is None  # rebuilt from its state dict, not pickled as a module
    np.testing.assert_allclose(again.score(images)[0], fitted.score(images)[0], rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_a_fit_is_repeatable_and_leaves_the_global_generators_alone(method):
    settings = AnomalyMethodSettings(layers=LAYERS[method], coreset_ratio=0.1)
    images, fits = textures(30, 6), []
    np.random.seed(7)
    for _ in range(2):
        detector = AnomalyDetector(
            method, "tf_efficientnet_lite0", settings, 64, "stretch", ["default"], "split-a"
        )
        fits.append(detector.fit(images).score(images[:4])[0])
    np.testing.assert_array_equal(fits[0], fits[1])
    before = np.random.get_state()[1].copy()
    detector.fit(images)
    assert (np.random.get_state()[1] == before).all()


def test_a_small_train_set_keeps_a_memory_bank():
    """Three 32 px images give 48 patches: 1 % of them would be none; all are kept."""
    settings = AnomalyMethodSettings(layers=["blocks.2", "blocks.4"])
    detector = AnomalyDetector(
        "patchcore", "tf_efficientnet_lite0", settings, 32, "stretch", ["default"], "split-a"
    ).fit(textures(3, 8, size=32))
    assert len(detector.model().memory_bank) == 3 * 4 * 4
    assert np.isfinite(detector.score(textures(2, 9, size=32))[0]).all()


def test_an_unknown_method_lists_the_registered_ones():
    assert {"patchcore", "padim"} <= set(METHODS)
    with pytest.raises(ValueError, match="registered: .*patchcore"):
        create_method("nope")


def test_the_threshold_rules():
    normal, anomalous = np.linspace(0, 1, 50), np.linspace(2, 3, 10)
    scores, labels = np.r_[normal, anomalous], np.r_[np.zeros(50, bool), np.ones(10, bool)]
    value, rule = choose_threshold(scores, labels, "auto", 0.99)
    assert 1 < value < 2 and "F1" in rule  # separates the two exactly
    value, rule = choose_threshold(normal, np.zeros(50, bool), "auto", 0.9)
    assert value == pytest.approx(np.quantile(normal, 0.9)) and "normal" in rule
    with pytest.raises(ValueError, match="needs anomalous and normal"):
        choose_threshold(normal, np.zeros(50, bool), "best_f1", 0.9)
    with pytest.raises(ValueError, match="must be one of"):
        choose_threshold(scores, labels, "median", 0.9)


def test_image_metrics_have_group_intervals_and_say_when_they_cannot_be_measured():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40, bool), np.ones(20, bool)]
    scores = labels + rng.normal(0, 0.7, 60)
    groups = np.arange(60) // 3  # three images a part
    report = image_metrics(scores, labels, 0.5, groups, rounds=50)
    assert 0.6 < report["auroc"] < 1.0 and report["n"] == 60 and report["n_anomalous"] == 20
    low, high = report["auroc_interval"]
    assert low < report["auroc"] < high
    assert "reason" in image_metrics(scores, np.zeros(60, bool), 0.5, groups)
    assert "reason" in pixel_metrics(
        np.zeros((2, 8, 8)), np.zeros((2, 8, 8), bool), np.array([True, False])
    )


def test_the_gate_calls_normal_what_the_detector_passes_and_keeps_the_classifiers_defect():
    probs = np.array([[0.7, 0.2, 0.1], [0.7, 0.1, 0.2], [0.1, 0.6, 0.3]])
    gated = gated_probabilities(probs, np.array([False, True, True]), single_label=True)
    assert gated.argmax(1).tolist() == [0, 2, 1]  # the second: its most probable defect
    assert np.allclose(gated.sum(1), 1) and gated[1:, 0].tolist() == [0, 0]
    multilabel = gated_probabilities(probs, np.array([False, True, False]), single_label=False)
    assert np.allclose(multilabel, probs * np.array([[0], [1], [0]]))


def test_a_round_of_the_gate_learns_from_neither_its_test_fold_nor_its_threshold_fold():
    samples = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(8)],
            "unit_id": list("aabbccdd"),
            "fold": [0, 0, 1, 1, 2, 2, 3, 3],
        }
    )
    for fold in range(4):
        split = fold_as_split(samples, fold).set_index("sample_id")["split"]
        assert set(samples.loc[samples["fold"] == fold, "sample_id"].map(split)) == {"test"}
        following = samples.loc[samples["fold"] == (fold + 1) % 4, "sample_id"]
        assert set(following.map(split)) == {"val"}
        assert (split == "train").sum() == 4


def test_the_gate_refuses_scores_of_other_photos_or_folds():
    predictions = pd.DataFrame(
        {"item_id": ["a/x", "b/x"], "sample_id": ["a", "b"], "fold": [0, 1], "unit_id": ["a", "b"],
         "prob_normal": [0.9, 0.2], "prob_crack": [0.1, 0.8],
         "target_normal": [1, 0], "target_crack": [0, 1]}
    )  # fmt: skip
    scores = pd.DataFrame(
        {"item_id": ["a/x", "b/x"], "fold": [0, 1], "anomaly_score": [0.1, 2.0],
         "threshold": [1.0, 1.0], "anomalous": [False, True]}
    )  # fmt: skip
    gated = gate(predictions, scores)
    assert gated[["prob_normal", "prob_crack"]].to_numpy().tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match="not of these predictions"):
        gate(predictions, scores.assign(fold=[0, 0]))
    with pytest.raises(ValueError, match="not of these predictions"):
        gate(predictions, scores.iloc[:1])
