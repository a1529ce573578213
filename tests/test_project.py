"""Project-level promises: the ML library stands alone; after the main command the lineage,
the MLflow runs and the notebooks look right to a person (headless Chromium)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from PIL import Image

from anomaly_lens import browser, tracking
from tests.conftest import PROJECT_ROOT, SMALL_RUN, base_parameters, make_project
from tests.test_session import latest

ML_PACKAGE = PROJECT_ROOT / "src" / "anomaly_lens" / "ml"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_ml_library_has_no_kedro_imports():
    offenders = {
        str(path.relative_to(PROJECT_ROOT)): sorted(
            n for n in imported_modules(path) if n.startswith("kedro")
        )
        for path in ML_PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(offenders) >= 5  # the scan did look at the library


def test_ml_library_imports_without_kedro_on_the_path():
    code = (
        "import sys; sys.modules['kedro'] = None\n"  # any `import kedro` now fails
        "import anomaly_lens.ml.data.inspection, anomaly_lens.ml.data.synthetic\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_kedro_viz_build_shows_the_lineage(project):
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    kedro = Path(sys.executable).with_name("kedro")
    subprocess.run(
        [str(kedro), "viz", "build"], cwd=project, env=env, check=True, capture_output=True
    )
    graph = json.loads((project / "build" / "api" / "main").read_text())
    names = {node["id"]: node["name"] for node in graph["nodes"]}
    edges = {(names[e["source"]], names[e["target"]]) for e in graph["edges"]}
    assert ("generate_raw_dataset", "demo_images") in edges
    assert ("demo_images", "collect_records") in edges
    assert ("inspect_raw_records", "manifest") in edges
    assert {"raw", "intermediate", "reporting"} <= set(graph["layers"])
    assert (project / "build" / "index.html").is_file()
    for view in (project / "build" / "api" / "pipelines").iterdir():  # no cycle of layers
        assert json.loads(view.read_text())["layers"], view.name
    binary = json.loads((project / "build" / "api" / "pipelines" / "train_binary").read_text())
    groups = set(binary["modular_pipelines"])  # one collapsible group per anomaly type
    assert {"binary.plume", "binary.streak", "binary.hotspot", "binary.crack"} <= groups


@pytest.fixture(scope="module")
def ran_project(tmp_path_factory) -> tuple[Path, str]:
    """A project after the main command (kept small), and its MLflow tracking URI."""
    root = tmp_path_factory.mktemp("ran")
    project = make_project(root)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        with KedroSession.create(project_path=project, runtime_params=SMALL_RUN) as session:
            session.run(pipeline_names=["__default__"])
    return project, tracking_uri


@pytest.mark.slow
def test_main_command_runs_the_whole_chain(ran_project, monkeypatch):
    project, tracking_uri = ran_project
    raw = project / "data/01_raw/demo"
    assert (
        len(list((raw / "images").rglob("*.png")))
        == json.loads((raw / "metadata.json").read_text())["n_images"]
    )
    manifest = pd.read_parquet(latest(project / "data/02_intermediate/synthetic/manifest.parquet"))
    assert manifest["specimen_id"].nunique() == 8
    assert set(manifest["view"]) == {"co2", "ch4"}
    report = json.loads(
        latest(project / "data/08_reporting/synthetic/data_quality_report.json").read_text()
    )
    assert report["n_images"] == len(manifest)
    assert latest(project / "data/08_reporting/synthetic/data_quality.png").stat().st_size > 0
    splits = pd.read_parquet(latest(project / "data/05_model_input/synthetic/splits.parquet"))
    assert len(splits) == 32 and splits.groupby("group_id")["split"].nunique().max() == 1
    reports = project / "data/08_reporting/synthetic"
    for plot in ("bbox_previews", "split_distribution", "training_curves", "evaluation_plots"):
        with Image.open(latest(reports / f"{plot}.png")) as picture:
            pixels = np.asarray(picture.convert("L"))
        assert min(pixels.shape) >= 200 and pixels.std() > 5, plot  # drawn, not blank
    pairing = json.loads(latest(reports / "pairing_report.json").read_text())
    assert (
        pairing["n_samples"] == len(splits) == sum(pairing["samples_by_number_of_views"].values())
    )
    metrics = json.loads(latest(reports / "evaluation_metrics.json").read_text())
    assert {"val", "test", "best_epoch", "n_parameters"} <= set(metrics)
    baselines = json.loads(latest(reports / "baseline_metrics.json").read_text())
    for name in ("random_forest", "frozen_logistic"):
        baseline = baselines[name]
        assert baseline["classes"] == metrics["classes"]
        for split in ("val", "test"):  # scored on the network's samples, figures in range
            assert baseline[split]["n_samples"] == metrics[split]["n_samples"]
            low, high = baseline[split]["macro_f1_ci95"]
            assert 0 <= low <= high <= 1 and 0 <= baseline[split]["macro_f1"] <= 1
        assert metrics["baselines"][name]["test"]["macro_f1"] == baseline["test"]["macro_f1"]
    page = latest(reports / "xai_report.html").read_text()
    assert "<h1>Explanations</h1>" in page and page.count("data:image/png;base64,") >= 3
    xai = json.loads(latest(reports / "xai_metrics.json").read_text())
    methods = base_parameters()["xai"]["attribution"]["methods"]
    assert set(xai["quality"]) == set(methods)
    assert all(set(per_class) <= set(metrics["classes"]) for per_class in xai["quality"].values())
    assert latest(project / "data/06_models/synthetic/model.pt").stat().st_size > 1e6
    predictions = pd.read_parquet(
        latest(project / "data/07_model_output/synthetic/evaluation_predictions.parquet")
    )
    assert len(predictions) == metrics["val"]["n_samples"] + metrics["test"]["n_samples"]

    # One MLflow run with the parameters and the reports, the binary model nested in it.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    everything = mlflow.search_runs(experiment_names=["anomaly_lens"])
    runs = everything[everything["tags.mlflow.parentRunId"].isna()]
    assert len(runs) == 1
    nested = everything[everything["tags.mlflow.parentRunId"] == runs.iloc[0].run_id]
    assert list(nested["tags.anomaly_type"]) == ["plume"]
    comparison = json.loads(
        latest(project / "data/08_reporting/synthetic/binary_comparison.json").read_text()
    )
    assert runs.iloc[0]["metrics.binary.plume.f1_difference"] == pytest.approx(
        comparison["per_class"]["plume"]["f1_difference"]
    )
    assert runs.iloc[0]["params.synthetic.n_specimens"] == "8"
    # Headline figures are metrics, and tags tell runs apart in the UI.
    assert runs.iloc[0]["metrics.test_macro_f1"] == pytest.approx(metrics["test"]["macro_f1"])
    assert "metrics.calibration.ece_after" in runs and "metrics.ood.chosen_auroc_far_ood" in runs
    assert "metrics.xai.integrated_gradients.relevance_mass" in runs
    assert runs.iloc[0]["tags.mlflow.runName"] == "base · __default__ · resnet18"
    assert runs.iloc[0]["tags.dataset"] == "synthetic"
    artifacts = {
        a.path for a in mlflow.MlflowClient().list_artifacts(runs.iloc[0].run_id, "reports")
    }
    assert {
        "reports/data_quality_report.json",
        "reports/quarantine.csv",
        "reports/split_report.json",
        "reports/xai_report.html",
    } <= artifacts


def needs_chromium() -> None:
    if browser.chromium() is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")


def has_ink(screenshot: Path) -> bool:
    """A rendered page, not a blank one: dark and light pixels both."""
    pixels = np.asarray(Image.open(screenshot).convert("L"))
    return (pixels < 100).mean() > 0.001 and (pixels > 150).mean() > 0.01


@pytest.mark.slow
def test_kedro_viz_serves_the_flowchart_with_its_layers(ran_project, tmp_path):
    needs_chromium()
    project, _ = ran_project
    shot = tmp_path / "kedro_viz.png"
    with browser.kedro_viz(project) as url:
        page = browser.look(url, shot, size=(1800, 1100))
    assert 'class="pipeline-flowchart' in page  # the flowchart, not an error page
    assert page.count('class="pipeline-node pipeline-node--task"') > 20
    assert {"raw", "model_input", "reporting"} <= set(
        re.findall(r'data-id="layer-label--(\w+)"', page)
    )
    assert has_ink(shot)


@pytest.mark.slow
def test_mlflow_ui_lists_the_run_with_its_headline_metrics(ran_project, tmp_path):
    needs_chromium()
    project, tracking_uri = ran_project
    experiment = mlflow.MlflowClient(tracking_uri).get_experiment_by_name("anomaly_lens")
    shot = tmp_path / "mlflow_runs.png"
    with browser.mlflow_ui(project, tracking_uri) as url:
        page = browser.look(tracking.headline_url(url, experiment.experiment_id), shot)
    assert "base · __default__ · resnet18" in page  # the run, by its readable name
    for column in ("test_macro_f1", "calibration.ece_after", "binary.assembled_macro_f1"):
        assert column in page  # the headline view shows the metric columns
    assert has_ink(shot)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["explore_data", "results"])
def test_kedro_jupyter_kernel_runs_the_notebooks(ran_project, name, tmp_path):
    project, tracking_uri = ran_project
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter"),
        "MLFLOW_TRACKING_URI": tracking_uri,
    }
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [str(bin_dir / "kedro"), "jupyter", "setup"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )
    notebook = project / "notebooks" / f"{name}.ipynb"
    notebook.parent.mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "notebooks" / f"{name}.ipynb", notebook)
    subprocess.run(
        [
            str(bin_dir / "jupyter"),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--inplace",
            str(notebook),
        ],
        cwd=notebook.parent,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    executed = json.loads(notebook.read_text())
    printed = "".join(
        "".join(out["text"])
        for cell in executed["cells"]
        for out in cell.get("outputs", [])
        if out.get("name") == "stdout"
    )
    figures = sum(
        "image/png" in out.get("data", {})
        for cell in executed["cells"]
        for out in cell.get("outputs", [])
    )
    if name == "explore_data":
        assert "32 samples" in printed
    else:
        assert "test macro-F1" in printed and "Assembled binary models" in printed
        assert "checks passed" in printed and figures >= 2
