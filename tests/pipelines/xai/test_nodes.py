"""The xai nodes on a small trained model whose data say which view shows which type:
the ground-truth checks of the issue hold, and the report opens in a browser."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from PIL import Image

from anomaly_lens import browser
from anomaly_lens.ml.data import synthetic
from anomaly_lens.ml.explanation.attribution import METHODS
from anomaly_lens.pipelines.anomaly.nodes import fit_anomaly_detector
from anomaly_lens.pipelines.evaluate.nodes import evaluate_model
from anomaly_lens.pipelines.train.nodes import cache_images, train_model
from anomaly_lens.pipelines.xai.nodes import (
    explain_selection,
    map_explained_anomalies,
    render_xai_report,
    score_explanations,
    select_explained,
)
from tests.conftest import base_parameters
from tests.pipelines.train.test_nodes import VIEWS, prepare

# One type seen only in co2, one only in ch4: what the view shares must recover.
VISIBLE = {"plume": ["co2"], "hotspot": ["ch4"]}


@pytest.fixture(scope="module")
def data():
    """50 specimens at 64 px: the image cache, split and train parameters."""
    types = tuple(synthetic.AnomalyType(name, tuple(v)) for name, v in VISIBLE.items())
    config = synthetic.SyntheticConfig(
        n_specimens=50, image_size=128, seed=3, anomaly_types=types, rare_fraction=0.0
    )
    samples, manifest, masks, raw, classes, splits = prepare(config)
    train = copy.deepcopy(base_parameters()["train"])
    train["image_size"] = 64
    train["bootstrap_rounds"] = 10
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, train)
    return samples, manifest, masks, raw, classes, splits, train, cache


@pytest.fixture(scope="module")
def explained(data, tmp_path_factory):
    """A resnet18 trained for up to 20 epochs on 50 specimens at 64 px, explained."""
    samples, manifest, _, _, classes, splits, train, cache = data
    train = copy.deepcopy(train)
    train["trainer"].update(
        max_epochs=20,
        patience=20,
        progress_bar=False,
        checkpoint_dir=str(tmp_path_factory.mktemp("ckpt")),
    )
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, train)
    metrics, predictions = evaluate_model(bundle, cache, splits, None, train)
    params = base_parameters()["xai"]
    selection = select_explained(predictions, bundle, cache, splits, params)
    attributions = explain_selection(bundle, cache, selection, params)
    xai_metrics, headline = score_explanations(attributions, {"visible_in_views": VISIBLE}, params)
    return splits, metrics, selection, attributions, xai_metrics, headline, params


def test_only_test_samples_are_explained_with_every_kind_per_class(explained):
    splits, _, selection, attributions, *_ = explained
    test_ids = set(splits.loc[splits["split"] == "test", "sample_id"])
    assert set(selection["sample_id"]) <= test_ids
    assert set(selection["class"]) == set(VISIBLE)
    assert {"correct", "most_confident"} <= set(selection["reason"])
    assert set(attributions["maps"]) == set(METHODS)


def test_single_view_types_are_attributed_to_their_view(explained):
    _, metrics, _, _, xai_metrics, *_ = explained
    assert metrics["test"]["macro_f1"] >= 0.9  # a model that learned the types
    for method in ("integrated_gradients", "grad_cam"):
        for name, (view,) in VISIBLE.items():
            assert xai_metrics["view_share"][method][name][view] >= 0.7, (method, name)


def test_explanations_point_at_the_defects_and_beat_random(explained):
    xai_metrics = explained[4]
    plume = xai_metrics["quality"]["integrated_gradients"]["plume"]
    assert plume["pointing_game"] >= 0.8 and plume["n_positive"] >= 5
    for method, pooled in xai_metrics["relevance_mass_pooled"].items():
        assert pooled["method"] > pooled["random"], method
    for method in METHODS:  # the faithfulness check: most attributed pixels matter most
        for name in VISIBLE:
            entry = xai_metrics["quality"][method][name]
            assert entry["deletion_auc"] is not None and entry["deletion_auc_random"] is not None
    ig = xai_metrics["quality"]["integrated_gradients"]
    assert all(e["deletion_auc"] < e["deletion_auc_random"] for e in ig.values())
    assert xai_metrics["checks_passed"] and xai_metrics["checks"]


def test_metrics_have_the_documented_shape(explained):
    xai_metrics, headline = explained[4], explained[5]
    assert set(xai_metrics["seconds_per_image"]) == set(METHODS)
    for name, views in VISIBLE.items():
        entry = xai_metrics["per_class"][name]
        assert entry["view_share"] == xai_metrics["view_share"]["integrated_gradients"][name]
        assert sum(entry["distance_profile"]["attribution"]) == pytest.approx(1.0)
        assert entry["visible_in_views"] == views
    assert headline["checks_passed"]["value"] == 1.0


@pytest.fixture(scope="module")
def anomaly_maps(data, explained):
    """The one-class detector of the same split, mapping the explained images."""
    *_, splits, train, cache = data
    *_, attributions, _, _, params = explained
    anomaly = {**base_parameters()["anomaly"], "coreset_ratio": 0.1, "bootstrap_rounds": 10}
    detector = fit_anomaly_detector(cache, splits, anomaly, train)
    return detector, map_explained_anomalies(attributions, detector, splits, params)


def test_the_one_class_maps_sit_beside_the_attributions_and_find_the_defects(
    explained, anomaly_maps
):
    splits, *_, attributions, _, _, params = explained
    detector, found = anomaly_maps
    assert found["applied"] and found["maps"].shape == attributions["images"].shape
    assert (found["maps"][~attributions["view_mask"].astype(bool)] == 0).all()
    scores = [entry for entry in found["quality"].values() if entry["n_positive"]]
    assert scores and all(
        entry["relevance_mass"] > entry["relevance_mass_random"] for entry in scores
    )
    elsewhere = splits.assign(split="train")  # another split: never applied
    assert not map_explained_anomalies(attributions, detector, elsewhere, params)["applied"]
    missing = map_explained_anomalies(attributions, None, splits, params)
    assert "run `kedro run --pipelines=anomaly`" in missing["reason"]


def test_the_report_is_one_self_contained_page(explained, anomaly_maps, tmp_path):
    *_, attributions, xai_metrics, _, params = explained
    page = render_xai_report(attributions, xai_metrics, None, anomaly_maps[1], params)
    assert "One-class anomaly maps" in page and "Not applied" not in page
    assert page.lstrip().lower().startswith("<!doctype html")
    assert page.count("data:image/png;base64,") >= 5  # no cross-attention figure here
    assert 'src="http' not in page and 'href="http' not in page  # nothing to fetch
    for heading in ("Ground-truth checks", "Which view drives", "Overlays", "Clusters"):
        assert heading in page
    (tmp_path / "xai_report.html").write_text(page)


def test_the_report_renders_in_headless_chromium(explained, tmp_path):
    if browser.chromium() is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    *_, attributions, xai_metrics, _, params = explained
    page = tmp_path / "xai_report.html"
    missing = {"applied": False, "reason": "no anomaly detector"}
    page.write_text(render_xai_report(attributions, xai_metrics, None, missing, params))
    shot = tmp_path / "xai_report.png"
    browser.look(page.as_uri(), shot, size=(1200, 1600))
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (1600, 1200)
    # A rendered page: text and tables, and the dark heatmaps of the embedded figures.
    assert (pixels < 60).mean() > 0.002 and (pixels > 200).mean() > 0.5
