"""Project-level promises: the ML library stands alone, kedro-viz builds the lineage."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession

from tests.conftest import PROJECT_ROOT, SMALL_RUN

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


@pytest.mark.slow
def test_kedro_jupyter_kernel_runs_the_exploration_notebook(project, tmp_path):
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter"),
    }
    bin_dir = Path(sys.executable).parent
    with KedroSession.create(project_path=project, runtime_params=SMALL_RUN) as session:
        session.run(pipeline_names=["__default__"])
    subprocess.run(
        [str(bin_dir / "kedro"), "jupyter", "setup"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )
    notebook = project / "notebooks" / "explore_data.ipynb"
    notebook.parent.mkdir()
    shutil.copy(PROJECT_ROOT / "notebooks" / "explore_data.ipynb", notebook)
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
        for out in executed["cells"][1]["outputs"]
        if out.get("name") == "stdout"
    )
    assert "32 samples" in printed
