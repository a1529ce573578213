"""Whole Kedro sessions on a temporary copy of the project (conf + pyproject)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from kedro.framework.session import KedroSession

from tests.conftest import SMALL_RUN


def run(project: Path, pipelines: list[str], env: str | None = None, **runtime_params) -> None:
    with KedroSession.create(
        project_path=project, env=env, runtime_params=runtime_params
    ) as session:
        session.run(pipeline_names=pipelines)


def latest(folder: Path) -> Path:
    """The newest version of a versioned dataset folder."""
    return sorted(p for p in folder.glob("*/*") if p.is_file())[-1]


@pytest.mark.slow
def test_a_second_run_adds_versions_instead_of_overwriting(project):
    for _ in range(2):
        run(project, ["synthetic", "ingestion"], synthetic={"n_specimens": 2, "image_size": 32})
    versions = list((project / "data/02_intermediate/synthetic/manifest.parquet").iterdir())
    assert len(versions) == 2


@pytest.mark.real_data
def test_prepares_the_whole_magnetic_tile_dataset(project, magnetic_tile_dir):
    run(
        project,
        ["ingestion", "bbox", "pairing", "split"],
        env="mtd",
        raw_dir=str(magnetic_tile_dir),
    )
    folder = project / "data/02_intermediate/magnetic_tile"
    manifest = pd.read_parquet(latest(folder / "manifest.parquet"))
    assert len(manifest) == 1344
    assert manifest["class_folder"].value_counts().to_dict() == {
        "Free": 952,
        "Blowhole": 115,
        "Uneven": 103,
        "Break": 85,
        "Crack": 57,
        "Fray": 32,
    }
    assert manifest["labels"].map(len).max() == 1
    assert (manifest.query("class_folder == 'Free'")["labels"].map(len) == 0).all()
    assert set(manifest["view"]) == {f"exp{k}" for k in range(7)}
    defects = manifest.query("class_folder != 'Free'")
    with_mask = defects.apply(lambda r: r[f"has_mask_{r.class_folder}"], axis=1)
    report = json.loads(
        latest(project / "data/08_reporting/magnetic_tile/data_quality_report.json").read_text()
    )
    assert report["n_quarantined"] == 0 and report["images_by_class_folder"]["Free"] == 952
    # A handful of real defect masks are all zero: kept as labels, counted in the report.
    assert with_mask.sum() == 388
    assert report["labelled_images_without_mask"] == len(defects) - 388

    # Tiles recovered from capture numbers (max_gap 300): 248 tiles + 3 exp0 leftovers.
    primary = project / "data/03_primary/magnetic_tile"
    samples = pd.read_parquet(latest(primary / "samples.parquet"))
    assert len(samples) == 251 and samples["in_sequence"].sum() == 248
    assert samples["complete"].sum() == 201
    assert samples["n_views"].sum() == 1344  # every image is in exactly one sample
    assert (samples["class_folder"].value_counts() > 0).all()

    # Zero leakage, and the balance bar for classes with >= 50 samples.
    splits = pd.read_parquet(latest(project / "data/05_model_input/magnetic_tile/splits.parquet"))
    assert splits.groupby("group_id")["split"].nunique().max() == 1
    table = pd.read_csv(latest(project / "data/08_reporting/magnetic_tile/split_table.csv"))
    counts = samples.filter(like="label_").sum().rename(lambda c: c.removeprefix("label_"))
    counts["normal"] = int((samples["labels"].map(len) == 0).sum())
    large = counts[counts >= 50].index
    assert len(large) >= 1
    assert table[table["class"].isin(large)]["deviation_pp"].abs().max() <= 3
    # Re-captured tiles (near-identical images in different tiles) are split together.
    report = json.loads(
        latest(project / "data/08_reporting/magnetic_tile/split_report.json").read_text()
    )
    assert report["units_after_joining_shared_content"] < report["groups"] == 251


@pytest.mark.slow
def test_cv_and_leakage_pipelines_report_pooled_and_leaky_figures(project):
    small = {**SMALL_RUN, "cv": {"folds": 3, "candidates": 2}}
    run(project, ["__default__"], **small)
    run(project, ["cv", "leakage"], **small)
    reports = project / "data/08_reporting/synthetic"
    cv_metrics = json.loads(latest(reports / "cv_metrics.json").read_text())
    assert {"macro_f1", "macro_f1_ci95", "per_class"} <= set(cv_metrics["oof"])
    assert "segmentation" not in cv_metrics["oof"]  # a classification model has no masks
    assert cv_metrics["folds"] == 3 and cv_metrics["group_by"] == "unit"
    leakage = json.loads(latest(reports / "leakage_report.json").read_text())
    assert leakage["grouped_macro_f1"] == cv_metrics["oof"]["macro_f1"]
    assert {"random_macro_f1", "gap"} <= set(leakage)
    leaky = json.loads(latest(reports / "leaky/cv_metrics.json").read_text())  # namespace
    assert leaky["group_by"] == "none" and leaky["oof"]["macro_f1"] == leakage["random_macro_f1"]
    predictions = pd.read_parquet(
        latest(project / "data/07_model_output/synthetic/cv_predictions.parquet")
    )
    assert predictions["item_id"].is_unique
    runs = mlflow.search_runs(experiment_names=["anomaly_lens"])
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].sort_values("start_time").iloc[-1]
    assert parent["metrics.cv.oof_macro_f1"] == pytest.approx(cv_metrics["oof"]["macro_f1"])
    assert parent["metrics.leaky.cv.oof_macro_f1"] == pytest.approx(leakage["random_macro_f1"])
    gate = json.loads(latest(reports / "cv_gate_metrics.json").read_text())  # the hybrid
    assert gate["network"]["against_classifier_alone"]["reference"]["macro_f1"] == pytest.approx(
        cv_metrics["oof"]["macro_f1"]
    )
    assert parent["metrics.cv.gate_oof_macro_f1"] == pytest.approx(
        gate["network"]["oof"]["macro_f1"]
    )
    assert (runs["tags.mlflow.parentRunId"] == parent.run_id).sum() == 6  # 3 folds, twice
