"""Shared fixtures: MLflow goes to a temporary SQLite file, telemetry is off."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from kedro.framework.startup import bootstrap_project
from omegaconf import OmegaConf

from tests.services import mlflow_server

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MAGNETIC_TILE_DIR = Path(
    os.environ.get(
        "MAGNETIC_TILE_DIR", PROJECT_ROOT.parent / "shared" / "datasets" / "magnetic_tile"
    )
)

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

# The suite runs in parallel workers (pyproject: --numprocesses=auto): each worker, and
# the Kedro processes it starts, gets its share of the cores instead of all of them.
MAX_WORKERS = 4  # whole Kedro runs take a few GB each
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _threads = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ["OMP_NUM_THREADS"] = str(max(1, _threads))
    torch.set_num_threads(max(1, _threads))


def pytest_xdist_auto_num_workers(config) -> int:
    """``--numprocesses=auto``: one worker per core, at most MAX_WORKERS."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


@pytest.fixture(autouse=True)
def _mlflow_to_tmp(tmp_path_factory, monkeypatch):
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")


@pytest.fixture
def tracking_server(tmp_path_factory, monkeypatch) -> str:
    """An ``mlflow server`` on 127.0.0.1 (its own store and artefacts) that this test's runs
    track to; yields its URL."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow_server")) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        yield url


def base_parameters() -> dict:
    """The parameters of conf/base, merged as Kedro merges them (a fresh copy each call)."""
    files = sorted((PROJECT_ROOT / "conf" / "base").glob("parameters_*.yml"))
    return OmegaConf.to_container(OmegaConf.merge(*(OmegaConf.load(f) for f in files)))


@pytest.fixture
def magnetic_tile_dir() -> Path:
    """The real Magnetic Tile dataset; tests using it skip where it is absent."""
    if not MAGNETIC_TILE_DIR.is_dir():
        pytest.skip(f"Magnetic Tile dataset not found at {MAGNETIC_TILE_DIR}")
    return MAGNETIC_TILE_DIR


def make_project(folder: Path) -> Path:
    """A throw-away project folder: the real conf and pyproject, an empty data tree."""
    shutil.copy(PROJECT_ROOT / "pyproject.toml", folder)
    shutil.copytree(PROJECT_ROOT / "conf", folder / "conf", ignore=shutil.ignore_patterns("local"))
    (folder / "conf" / "local").mkdir()
    (folder / "src").mkdir()  # the package itself is imported from the installed project
    bootstrap_project(folder)
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A throw-away project folder: the real conf and pyproject, an empty data tree."""
    return make_project(tmp_path)


# A whole default run kept small: few specimens, one short epoch, one binary model.
SMALL_RUN = {
    "anomaly": {"bootstrap_rounds": 10},
    "binary": {"types": ["plume"], "common": {"trainer": {"max_epochs": 1}}},
    "synthetic": {"n_specimens": 8, "image_size": 48},
    "train": {
        "image_size": 32,
        "bootstrap_rounds": 10,
        "baseline_trees": 20,
        "trainer": {"max_epochs": 1, "batch_size": 8, "progress_bar": False},
    },
}
