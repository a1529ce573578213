"""New images through a trained model, as a user runs it: the model logged to an MLflow
tracking server and loaded back from it, `inference` on a folder with a corrupt image and a
missing view, `export` to ONNX."""

from __future__ import annotations

import json
import shutil
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import onnx
import pandas as pd
import pytest

import anomaly_lens
from tests.conftest import SMALL_RUN
from tests.test_session import latest, run

VIEWS = ("co2", "ch4")


@pytest.mark.slow
def test_new_images_are_inspected_predicted_and_the_model_exported(
    project, tmp_path, tracking_server
):
    run(project, ["__default__"], **SMALL_RUN)
    demo = project / "data/01_raw/demo"
    out = project / "data"

    new = tmp_path / "new"
    for view in VIEWS:
        shutil.copytree(demo / "images" / view, new / view)
    (new / "ch4" / "S0001_c0.png").unlink()  # a sample with one view missing
    (new / "co2" / "S0999_c0.png").write_text("not a picture")  # a corrupt file
    labels = pd.read_csv(demo / "annotations.csv")  # labelled: metrics
    labels[labels["ImageId"] != "ch4/S0001_c0.png"].to_csv(new / "annotations.csv", index=False)

    run(project, ["inference"], inference={"input_dir": str(new)}, **SMALL_RUN)
    quarantine = pd.read_csv(latest(out / "08_reporting/synthetic/inference/quarantine.csv"))
    assert quarantine[["image_id", "reason"]].values.tolist() == [["co2/S0999_c0", "unreadable"]]
    predictions = pd.read_parquet(latest(out / "07_model_output/synthetic/predictions.parquet"))
    samples = {p.stem for p in new.rglob("*.png")} - {"S0999_c0"}
    assert len(predictions) == len(samples) == predictions["sample_id"].nunique()
    assert set(predictions["level"]) == {"sample"}
    classes = json.loads(latest(out / "02_intermediate/synthetic/class_names.json").read_text())
    for prefix in ("prob", "pred", "target"):
        assert {f"{prefix}_{c}" for c in classes} <= set(predictions.columns)
    probs = predictions[[f"prob_{c}" for c in classes]].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all()
    # The default run calibrated the model: its temperatures and thresholds are applied.
    calibrator = json.loads(latest(out / "06_models/synthetic/calibrator.json").read_text())
    decisions = predictions[[f"pred_{c}" for c in classes]].to_numpy()
    assert (decisions == (probs >= np.array(calibrator["thresholds"]))).all()
    # ... and its OOD detector: flagged samples abstain (min_confidence is 0).
    assert predictions["out_of_distribution"].notna().all()
    assert (predictions["abstain"] == predictions["out_of_distribution"]).all()
    assert predictions["model_run_id"].notna().all()
    assert "S0001|c0" in set(predictions["sample_id"])  # predicted without its ch4 view
    report = json.loads(
        latest(out / "08_reporting/synthetic/inference/inference_report.json").read_text()
    )
    assert report["n_quarantined"] == 1 and report["n_samples"] == len(samples)
    assert report["calibration"]["temperature"] == calibrator["temperature"]
    ood = json.loads(latest(out / "08_reporting/synthetic/ood_metrics.json").read_text())
    assert ood["selection"]["rule"].startswith("auto")  # chosen on validation-side sets
    assert report["out_of_distribution"]["detector"] == ood["selection"]["chosen"]
    assert 0 <= report["metrics_per_sample"]["macro_f1"] <= 1
    assert report["calibration"]["model_id"] == report["model"]["identity"]
    # the demo's own images, against the model's training images: no drift
    drift = report["drift"]
    assert drift["applied"] and drift["n_images"] == len(list(new.rglob("*.png"))) - 1
    assert not drift["drift"] and drift["kid"] <= drift["threshold"]
    # the one-class detector of the same run scores every sample, at its validation threshold
    detector = pd.read_pickle(latest(out / "06_models/synthetic/anomaly_detector.pkl"))
    assert predictions["anomaly_score"].notna().all()
    flagged = predictions["anomaly_score"] > detector.threshold
    assert (predictions["anomalous"] == flagged).all()
    assert report["anomaly"] == {"applied": True, "n_anomalous": int(flagged.sum())}
    maps = (out / "07_model_output/synthetic/prediction_anomaly_maps").rglob("*.png")
    assert len(list(maps)) == len(list(new.rglob("*.png"))) - 1  # a map per readable photo

    # The run's MLflow model, loaded back from the tracking server, is the same predictor:
    # the same probabilities, decisions, OOD flags, abstentions and anomaly scores.
    runs = mlflow.search_runs(experiment_names=["anomaly_lens"], order_by=["start_time ASC"])
    run_id = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0].run_id
    assert mlflow.get_tracking_uri() == tracking_server
    served = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    keys = predictions["sample_id"].str.split("|", expand=True)
    paths = pd.DataFrame(
        {v: [str(new / v / f"{s}_{c}.png") for s, c in keys.values] for v in VIEWS}
    )
    readable = paths.map(lambda p: Path(p).exists() and not p.endswith("co2/S0999_c0.png"))
    answer = served.predict(paths.where(readable).assign(sample_id=predictions["sample_id"]))
    assert answer["sample_id"].tolist() == predictions["sample_id"].tolist()
    probs = [f"prob_{c}" for c in classes]
    assert np.abs(answer[probs].to_numpy() - predictions[probs].to_numpy()).max() <= 1e-6
    for column in [f"pred_{c}" for c in classes] + ["out_of_distribution", "abstain", "model_id"]:
        assert answer[column].tolist() == predictions[column].tolist(), column
    # ... and the same one-class detector: the same anomaly scores and flags
    np.testing.assert_allclose(answer["anomaly_score"], predictions["anomaly_score"], rtol=1e-5)
    assert answer["anomalous"].tolist() == predictions["anomalous"].tolist()
    # ... whose environment is the project and its dependencies as installed here
    needs = Path(mlflow.pyfunc.get_model_dependencies(f"runs:/{run_id}/model")).read_text()
    pinned = {f"torch=={version('torch')}", f"anomaly-lens=={anomaly_lens.__version__}"}
    assert pinned <= set(needs.split())

    run(project, ["export"], **SMALL_RUN)
    export = json.loads(latest(out / "08_reporting/synthetic/export_report.json").read_text())
    assert export["max_abs_diff"] <= 1e-4 and export["n_checked"] > 0
    assert export["temperature"] == calibrator["temperature"]  # folded into the graph
    graph = onnx.load(latest(out / "06_models/synthetic/model.onnx"))
    assert [i.name for i in graph.graph.input] == ["images", "view_mask"]
    assert export["inputs"]["images"][0] == "batch" and export["inputs"]["images"][1] == 2

    # The exported graph predicts as PyTorch does (its temperatures are the calibrator's).
    tables = {}
    for engine in ("torch", "onnxruntime"):
        settings = {"input_dir": str(new), "engine": engine, "tta": "none"}
        run(project, ["inference"], inference=settings, **SMALL_RUN)
        found = pd.read_parquet(latest(out / "07_model_output/synthetic/predictions.parquet"))
        tables[engine] = found.sort_values("sample_id")[[f"prob_{c}" for c in classes]]
    assert np.abs(tables["torch"].to_numpy() - tables["onnxruntime"].to_numpy()).max() < 1e-4


@pytest.mark.slow
def test_unlabelled_folder_gets_no_metrics_and_no_targets(project, tmp_path):
    """Without annotations.csv the images carry no labels: no target columns, no metrics."""
    run(project, ["synthetic", "ingestion", "pairing", "split", "train"], **SMALL_RUN)
    new = tmp_path / "new"
    shutil.copytree(project / "data/01_raw/demo/images", new)
    run(project, ["inference"], inference={"input_dir": str(new), "min_confidence": 0.99})
    out = project / "data"
    predictions = pd.read_parquet(latest(out / "07_model_output/synthetic/predictions.parquet"))
    assert not any(c.startswith("target_") for c in predictions.columns)
    report = json.loads(
        latest(out / "08_reporting/synthetic/inference/inference_report.json").read_text()
    )
    assert report["metrics"] == "the images carry no labels"
    assert report["calibration"].startswith("no calibrator")  # calibration never ran
    assert report["out_of_distribution"].startswith("no out-of-distribution detector")
    assert not report["drift"]["applied"] and "--pipelines=ood" in report["drift"]["note"]
    assert not report["anomaly"]["applied"] and predictions["anomaly_score"].isna().all()
    # One epoch leaves the model unsure: a high bar makes it abstain, and the rule says so.
    assert report["n_abstain"] == int(predictions["abstain"].sum()) > 0
    assert np.all(predictions.loc[predictions["abstain"], "confidence"] < 0.99)
