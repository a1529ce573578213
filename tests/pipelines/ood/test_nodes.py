"""The ood nodes on a tiny trained model: every set scored, test items never fitted."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from anomaly_lens.ml.evaluation.ood import CORRUPTIONS, DETECTORS
from anomaly_lens.pipelines.ood.nodes import (
    choose_ood_detector,
    fit_drift_reference,
    fit_ood_detectors,
    measure_split_distances,
    plot_ood_scores,
    score_ood_sets,
    summarise_ood,
)
from tests.conftest import base_parameters
from tests.pipelines.train.test_nodes import prepared, train_tiny  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):  # noqa: F811
    bundle, cache, splits, _ = train_tiny(prepared, tmp_path_factory.mktemp("ckpt"))
    return bundle, cache, splits


def test_the_ood_pipeline_scores_every_set_and_reports(trained):
    bundle, cache, splits = trained
    settings = {**base_parameters()["ood"], "max_items": 8}
    detectors = fit_ood_detectors(bundle, cache, splits, settings)
    scores = score_ood_sets(detectors, bundle, cache, splits, settings)
    corrupted = scores[scores["set"] == "corruption"]
    assert set(corrupted["corruption"]) == set(CORRUPTIONS)
    assert set(corrupted["severity"]) == {1, 2, 3, 4, 5}
    assert set(scores["detector"]) == set(DETECTORS) and scores["score"].notna().all()
    selection = choose_ood_detector(detectors, bundle, cache, splits, settings)
    chosen, report, table, headline = summarise_ood(scores, detectors, selection, settings)
    assert chosen.name == selection["chosen"] and chosen.threshold is not None
    assert report["selection"] == selection
    assert len(table) == len(DETECTORS) * (len(CORRUPTIONS) * 5 + 1)  # + far-OOD; no shift
    # The headline is the chosen detector's, as the table has it; the best on test is
    # reported apart, named as selected on test, and never logged as a headline.
    chosen_far = table[(table["set"] == "far_ood") & (table["detector"] == chosen.name)]
    assert report["summary"]["chosen_auroc_far_ood"] == pytest.approx(chosen_far["auroc"].item())
    assert report["test_selected_best"]["far_ood"]["auroc"] == pytest.approx(
        table.loc[table["set"] == "far_ood", "auroc"].max()
    )
    assert set(headline) == {
        "chosen_auroc_corruption_severity_3plus",  # ood.* once the catalog prefixes them
        "chosen_auroc_far_ood",
    }
    assert isinstance(plot_ood_scores(scores), Figure)


def test_test_items_never_enter_the_fit(trained):
    bundle, cache, splits = trained
    settings = base_parameters()["ood"]
    fitted = fit_ood_detectors(bundle, cache, splits, settings)
    without_test = splits.assign(split=splits["split"].replace({"test": "unused"}))
    again = fit_ood_detectors(bundle, cache, without_test, settings)
    assert {n: d.threshold for n, d in fitted.items()} == {n: d.threshold for n, d in again.items()}
    assert pd.Series(list(splits["split"])).eq("test").any()


def test_auto_chooses_on_validation_side_sets_only(trained):
    """``auto`` picks the best mean AUROC on sets made from val items: the same choice and
    figures whatever the test split holds; a named detector is taken as it is."""
    bundle, cache, splits = trained
    settings = {**base_parameters()["ood"], "max_items": 8, "detector": "auto"}
    detectors = fit_ood_detectors(bundle, cache, splits, settings)
    selection = choose_ood_detector(detectors, bundle, cache, splits, settings)
    figures = pd.DataFrame(selection["validation"]).T
    assert set(figures.index) == set(DETECTORS)
    assert selection["chosen"] == figures["mean"].idxmax()
    without_test = splits.assign(split=splits["split"].replace({"test": "unused"}))
    assert choose_ood_detector(detectors, bundle, cache, without_test, settings) == selection
    named = choose_ood_detector(
        detectors, bundle, cache, splits, {**settings, "detector": "energy"}
    )
    assert named == {"chosen": "energy", "rule": "ood.detector"}


def test_val_and_test_are_measured_against_train_overall_and_per_class(trained):
    bundle, cache, splits = trained
    settings = {**base_parameters()["ood"], "drift": {"max_images": 40, "resamples": 5}}
    reference = fit_drift_reference(bundle, cache, splits, settings)
    report = measure_split_distances(reference, bundle, cache, splits, settings)
    for part in ("val", "test"):
        found = report[f"train_vs_{part}"]
        assert found["kid"] == found["kid"] and found["fid"] > 0  # measured, not NaN
        assert found["n_reference"] == 40 and 0 < found["n_other"] <= 40
        assert found["drift"] == (found["kid"] > found["threshold"])
        per_class = found["per_class"]
        assert "normal" in per_class
        assert sum(c["n_other"] for c in per_class.values()) >= found["n_other"]
