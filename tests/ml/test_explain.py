"""Attributions for every kind of model, batched like one at a time; deletion curves."""

from __future__ import annotations

import pytest
import torch

from anomaly_lens.ml.explanation.attribution import (
    METHODS,
    AttributionSettings,
    ExplainedScores,
    attribute,
    curve_area,
    default_head,
    deletion_curves,
)
from anomaly_lens.ml.models import ModelConfig, create_model

VIEWS = ["co2", "ch4"]
FAST = AttributionSettings(n_steps=4, smoothgrad_samples=2, occlusion_window=8, batch_size=3)


def _model(views=VIEWS, **options):
    torch.manual_seed(0)
    config = ModelConfig(num_classes=3, views=views, backbone="resnet18", cbam_stages=[], **options)
    return create_model(config).eval()


def _inputs(n_views: int):
    torch.manual_seed(1)
    images = torch.rand(4, n_views, 1, 32, 32)
    view_mask = torch.ones(4, n_views, dtype=torch.bool)
    if n_views > 1:
        view_mask[0, 1] = False
        images[0, 1] = 0
    return images, view_mask, torch.tensor([0, 1, 2, 0])


MODELS = {
    "late shared": {},
    "late per-view encoders": {"fusion_options": {"shared_encoder": False}},
    "early": {"fusion": "early"},
    "cross attention": {"fusion": "cross_attention"},
    "multiscale segmentation": {"fusion": "multiscale", "task": "segmentation"},
    "multitask": {"task": "multitask"},
    "per-view": {"views": ["any"]},
}


@pytest.mark.parametrize("kind", MODELS)
def test_every_method_gives_one_map_per_view_and_none_for_a_missing_view(kind):
    options = dict(MODELS[kind])
    views = options.pop("views", VIEWS)
    model = _model(views, **options)
    scores = ExplainedScores(model, default_head(model))
    images, view_mask, targets = _inputs(len(views))
    for method in METHODS:
        found = attribute(scores, images, view_mask, targets, method, FAST)
        assert found.maps.shape == (4, len(views), 32, 32), method
        assert torch.isfinite(found.maps).all() and found.maps.abs().sum() > 0, method
        assert found.seconds_per_image > 0
        if len(views) > 1:
            assert found.maps[0, 1].abs().sum() == 0, method


def test_segmentation_explains_the_predicted_region_or_its_peak_pixel():
    model = _model(task="segmentation")
    scores = ExplainedScores(model, "segmentation")
    images, view_mask, _ = _inputs(2)
    region = scores.region(images, view_mask)
    assert region.shape == (4, 3, 32, 32)
    assert (region.flatten(2).sum(-1) >= 1).all()  # never empty: the peak pixel at least
    assert ExplainedScores(model, "classification").region(images, view_mask) is None


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "grad_cam", "occlusion"])
def test_batched_attributions_equal_one_image_at_a_time(method):
    model = _model()
    scores = ExplainedScores(model, "classification")
    images, view_mask, targets = _inputs(2)
    batched = attribute(scores, images, view_mask, targets, method, FAST).maps
    single = attribute(
        scores, images, view_mask, targets, method, FAST.model_copy(update={"batch_size": 1})
    ).maps
    torch.testing.assert_close(batched, single, rtol=1e-3, atol=1e-5)


def test_deletion_curve_runs_from_the_intact_to_the_fully_replaced_images():
    model = _model()
    scores = ExplainedScores(model, "classification")
    images, view_mask, targets = _inputs(2)
    order = torch.rand(4, 2, 32, 32)
    curves = deletion_curves(scores, images, view_mask, targets, order, 5, "zeros")
    assert curves.shape == (4, 6)
    intact = scores.confidence(images, view_mask, None, targets)
    emptied = scores.confidence(torch.zeros_like(images), view_mask, None, targets)
    torch.testing.assert_close(curves[:, 0], intact)
    torch.testing.assert_close(curves[:, -1], emptied)
    assert curve_area(torch.ones(2, 21)).tolist() == pytest.approx([1.0, 1.0])


def test_an_occlusion_window_larger_than_the_image_covers_it_whole():
    model = _model()
    scores = ExplainedScores(model, "classification")
    images, view_mask, targets = _inputs(2)
    big = FAST.model_copy(update={"occlusion_window": 64, "occlusion_stride": 32})
    maps = attribute(scores, images, view_mask, targets, "occlusion", big).maps
    assert maps.shape == (4, 2, 32, 32)
    assert (maps[1, 0] == maps[1, 0, 0, 0]).all()  # one window: one value per view
