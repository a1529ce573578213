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
import pytest
from kedro.framework.session import KedroSession
from PIL import Image

from anomaly_lens import browser, tracking
from tests.conftest import PROJECT_ROOT, SMALL_RUN, make_project

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
        "import anomaly_lens.ml.inspection, anomaly_lens.ml.synthetic\n"
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
