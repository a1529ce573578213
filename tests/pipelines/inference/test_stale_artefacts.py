"""Artefacts belong to the model they were made from: after model A's calibration, OOD
detectors and ONNX export, model B (another seed, same classes) is served with none of
A's artefacts — they are reported as not applied, or the run stops naming both models.
The one-class detector belongs to a split: applied to every model of its split only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from anomaly_lens.ml.serving.identity import StaleArtefactError, model_identity
from anomaly_lens.pipelines.anomaly.nodes import fit_anomaly_detector
from anomaly_lens.pipelines.calibration.nodes import calibrate
from anomaly_lens.pipelines.evaluate.nodes import evaluate_model
from anomaly_lens.pipelines.export.nodes import export_model
from anomaly_lens.pipelines.inference.nodes import (
    measure_drift,
    predict_new_images,
    summarise_inference,
)
from anomaly_lens.pipelines.ood.nodes import (
    choose_ood_detector,
    fit_drift_reference,
    fit_ood_detectors,
)
from anomaly_lens.pipelines.train.nodes import cache_images, train_model
from tests.conftest import base_parameters
from tests.pipelines.train.test_nodes import VIEWS, params, prepared  # noqa: F401 (fixture)


def _artefacts(bundle, cache, splits, p) -> tuple[dict, object, bytes]:
    """The model's calibrator, chosen OOD detector and ONNX graph, as the pipelines make them."""
    _, predictions = evaluate_model(bundle, cache, splits, None, p)
    calibrator, _, _ = calibrate(predictions, bundle, base_parameters()["calibration"])
    ood = {**base_parameters()["ood"], "max_items": 8}
    detectors = fit_ood_detectors(bundle, cache, splits, ood)
    detector = detectors[choose_ood_detector(detectors, bundle, cache, splits, ood)["chosen"]]
    graph, _ = export_model(bundle, calibrator, cache, splits, base_parameters()["export"])
    return calibrator, detector, graph


def test_a_retrained_model_never_uses_the_previous_models_artefacts(prepared, tmp_path):  # noqa: F811
    samples, manifest, masks, raw, classes, splits = prepared
    p = params(tmp_path, cbam_stages=[])
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    model_a, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    calibrator_a, detector_a, graph_a = _artefacts(model_a, cache, splits, p)
    p_b = {
        **p,
        "seed": p["seed"] + 1,
        "trainer": {**p["trainer"], "checkpoint_dir": str(tmp_path / "b")},
    }
    model_b, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p_b)
    a, b = model_identity(model_a), model_identity(model_b)
    assert a != b and model_b.classes == model_a.classes
    assert calibrator_a["model_id"] == detector_a.model_id == a

    settings = base_parameters()["inference"]
    inputs = (samples, manifest, masks, raw)
    table, _, _ = predict_new_images(
        model_b, calibrator_a, detector_a, None, None, *inputs, settings
    )
    alone, _, _ = predict_new_images(model_b, None, None, None, None, *inputs, settings)
    columns = [c for c in table if c.startswith("prob_")]
    assert np.array_equal(table[columns].to_numpy(), alone[columns].to_numpy())  # A's not applied
    assert table["out_of_distribution"].isna().all() and (table["model_id"] == b).all()
    drift_a = fit_drift_reference(model_a, cache, splits, base_parameters()["ood"])
    drift = measure_drift(model_b, drift_a, *inputs, settings)
    assert not drift["applied"] and a in drift["note"] and "--pipelines=ood" in drift["note"]
    report = summarise_inference(
        table,
        manifest,
        manifest.iloc[:0].assign(reason=[]),
        model_b,
        calibrator_a,
        detector_a,
        None,
        drift,
        settings,
    )
    assert report["model"]["identity"] == b and report["drift"] == drift
    for part, command in (("calibration", "calibration"), ("out_of_distribution", "ood")):
        assert report[part].startswith("not applied") and a in report[part] and b in report[part]
        assert f"kedro run --pipelines={command}" in report[part]

    onnx = {**settings, "engine": "onnxruntime"}
    with pytest.raises(StaleArtefactError, match=f"{a}.*{b}.*--pipelines=export"):
        predict_new_images(model_b, None, None, None, graph_a, *inputs, onnx)

    # B's own artefacts are applied, and the report names the model each was made from.
    calibrator_b, detector_b, graph_b = _artefacts(model_b, cache, splits, p_b)
    ood = base_parameters()["ood"]
    anomaly = {**base_parameters()["anomaly"], "coreset_ratio": 0.1}
    one_class = fit_anomaly_detector(cache, splits, anomaly, p)
    own, _, maps = predict_new_images(
        model_b, calibrator_b, detector_b, one_class, graph_b, *inputs, onnx
    )
    assert own["out_of_distribution"].notna().all()
    assert own["anomaly_score"].notna().all() and len(maps) == cache["view_mask"].sum()
    drift = measure_drift(model_b, fit_drift_reference(model_b, cache, splits, ood), *inputs, onnx)
    assert drift["applied"] and drift["n_images"] == cache["view_mask"].sum()
    report = summarise_inference(
        own,
        manifest,
        manifest.iloc[:0].assign(reason=[]),
        model_b,
        calibrator_b,
        detector_b,
        one_class,
        drift,
        onnx,
    )
    assert report["calibration"]["model_id"] == report["out_of_distribution"]["model_id"] == b
    assert (
        report["one_class_detector"]["split_id"] == model_b.split_id
        and report["anomaly"]["applied"]
    )


def test_a_one_class_detector_of_another_split_is_not_applied(prepared, tmp_path):  # noqa: F811
    """A model trained on a redrawn split (or saved before models recorded their split) is
    served without the detector: its threshold was set on images the model may have learnt."""
    samples, manifest, masks, raw, classes, splits = prepared
    p = params(tmp_path, cbam_stages=[])
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    model, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    redrawn = splits.assign(split=np.roll(splits["split"].to_numpy(), 1))
    anomaly = {**base_parameters()["anomaly"], "coreset_ratio": 0.1}
    other = fit_anomaly_detector(cache, redrawn, anomaly, p)
    settings = base_parameters()["inference"]
    inputs = (samples, manifest, masks, raw)
    for bundle in (model, replace(model, split_id=None)):
        table, _, maps = predict_new_images(bundle, None, None, other, None, *inputs, settings)
        assert table["anomaly_score"].isna().all() and maps == {}
        empty = manifest.iloc[:0].assign(reason=[])
        report = summarise_inference(
            table, manifest, empty, bundle, None, None, other, {}, settings
        )
        note = report["one_class_detector"]
        assert note.startswith("not applied") and other.split_id in note
        assert "kedro run --pipelines=anomaly" in note and not report["anomaly"]["applied"]
