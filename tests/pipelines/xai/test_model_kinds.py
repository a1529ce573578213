"""The xai nodes on tiny one-epoch models of other kinds: cross-attention fusion (its maps
in the report), a per-view model (a sample explained through its photos) and a
segmentation model (the predicted region explained)."""

from __future__ import annotations

import pytest

from anomaly_lens.pipelines.evaluate.nodes import evaluate_model
from anomaly_lens.pipelines.train.nodes import cache_images, train_model
from anomaly_lens.pipelines.xai.nodes import (
    explain_selection,
    render_xai_report,
    score_explanations,
    select_explained,
)
from tests.conftest import base_parameters
from tests.pipelines.train.test_nodes import VIEWS, params, prepared  # noqa: F401 (fixture)

KINDS = {
    "cross_attention": ({"fusion": "cross_attention"}, {}),
    "per_view": ({}, {"per_view": True}),
    "segmentation": ({"task": "segmentation"}, {"trainer": {"monitor": "val_loss", "mode": "min"}}),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_kind_is_explained_and_reported(kind, prepared, tmp_path):  # noqa: F811
    samples, manifest, masks, raw, classes, splits = prepared
    model_options, train_options = KINDS[kind]
    p = params(tmp_path, cbam_stages=[], **model_options)
    for key, value in train_options.items():
        p[key] = p[key] | value if isinstance(value, dict) else value
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    _, predictions = evaluate_model(bundle, cache, splits, None, p)
    xai = base_parameters()["xai"]
    xai["attribution"] |= {"n_steps": 4, "smoothgrad_samples": 2, "occlusion_window": 16}
    xai["max_samples"] = 6
    selection = select_explained(predictions, bundle, cache, splits, xai)
    attributions = explain_selection(bundle, cache, selection, xai)
    metrics, _ = score_explanations(attributions, None, xai)
    page = render_xai_report(attributions, metrics, None, {"applied": False, "reason": "-"}, xai)
    if kind == "cross_attention":
        n, v = attributions["view_mask"].shape
        assert attributions["attention"].shape[:2] == (n, v) and "Cross-attention" in page
    if kind == "per_view":  # every photo of a chosen sample, each its own view
        rows = attributions["rows"]
        assert rows.groupby("pair")["item_id"].nunique().max() == 2
        shares = metrics["view_share"]["integrated_gradients"]
        assert shares  # some chosen sample carries a class with both photos present
        for per_view in shares.values():  # each class's attribution split over both views
            assert set(per_view) == {"co2", "ch4"}
            assert sum(per_view.values()) == pytest.approx(1.0, abs=1e-3)
    if kind == "segmentation":  # no class scores: the samples that carry each class
        assert predictions.empty and metrics["model"]["head"] == "segmentation"
        assert (selection["target"] == 1).all()
    assert set(metrics["quality"]) == set(xai["attribution"]["methods"])
