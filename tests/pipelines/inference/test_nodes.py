"""Inference nodes on a tiny multitask model: masks and boxes, decisions and abstention."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anomaly_lens.ml.data.cache import ImageCache, MultiViewDataset
from anomaly_lens.ml.serving.predictor import DecisionRule, predicted_objects
from anomaly_lens.pipelines.inference.nodes import predict_new_images
from anomaly_lens.pipelines.train.nodes import cache_images, train_model
from tests.conftest import base_parameters
from tests.pipelines.train.test_nodes import VIEWS, params, prepared  # noqa: F401 (fixture)


def test_boxes_come_from_the_predicted_mask_at_the_original_size():
    cache = ImageCache(
        sample_ids=np.array(["s"]),
        images=np.zeros((1, 1, 8, 8), np.uint8),
        view_mask=np.ones((1, 1), bool),
        labels=np.zeros((1, 1), np.uint8),
        masks=np.zeros((1, 1, 1, 8, 8), np.uint8),
        view_shapes=np.array([[[16, 32]]], np.int32),  # the original was 16 x 32
        views=["v"],
        classes=["dent"],
        fingerprint="",
    )
    seg = torch.zeros(1, 1, 8, 8)
    seg[0, 0, 2:4, 2:6] = 0.9  # rows 2-3, columns 2-5 of the 8 x 8 mask
    boxes, pngs = predicted_objects(MultiViewDataset(cache, [0]), seg, ["dent"])
    assert json.loads(boxes[0]) == [
        {"class": "dent", "x0": 8, "y0": 4, "x1": 24, "y1": 8, "pixel_count": 64}
    ]
    assert list(pngs) == ["s/dent"]
    # a padded model's square holds the 16 x 32 photo in rows 2-5: mapped back through them
    seg = torch.zeros(1, 1, 8, 8)
    seg[0, 0, 3:5, 2:6] = 0.9
    boxes, _ = predicted_objects(MultiViewDataset(cache, [0]), seg, ["dent"], resize="pad")
    assert json.loads(boxes[0]) == [
        {"class": "dent", "x0": 8, "y0": 4, "x1": 24, "y1": 12, "pixel_count": 128}
    ]


def test_decisions_use_per_class_thresholds_and_abstain_when_unsure_or_flagged():
    rule = DecisionRule(threshold=(0.3, 0.7), min_confidence=0.6)
    probs = np.array([[0.4, 0.6], [0.9, 0.05], [0.95, 0.99]])
    decisions, confidence, abstain = rule.apply(probs, "multilabel", np.array([0, 0, 1], bool))
    assert decisions.tolist() == [[1, 0], [1, 0], [1, 1]]
    assert confidence == pytest.approx([0.6, 0.9, 0.95])
    assert abstain.tolist() == [False, False, True]  # the last one is out of distribution


def test_a_multitask_model_predicts_masks_boxes_and_decisions(prepared, tmp_path):  # noqa: F811
    samples, manifest, masks, raw, classes, splits = prepared
    p = params(tmp_path, task="multitask", cbam_stages=[])
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    settings = {**base_parameters()["inference"], "mask_threshold": 0.01, "min_box_area": 1}
    table, pngs, maps = predict_new_images(
        bundle, None, None, None, None, samples, manifest, masks, raw, settings
    )
    assert maps == {} and table["anomaly_score"].isna().all()  # no one-class detector
    assert len(table) == len(samples) and (table["level"] == "sample").all()
    assert {f"target_{c}" for c in classes} <= set(table.columns)  # labelled images
    boxes = table["boxes"].map(json.loads)
    assert boxes.map(len).sum() > 0 and len(pngs) > 0  # a low threshold finds objects
    run = {key.split("/")[0] for key in pngs}
    assert len(run) == 1  # one run folder, never shared with another run
    first = boxes[boxes.map(len) > 0].iloc[0][0]
    assert first["class"] in classes and 0 <= first["x0"] < first["x1"] <= 32
