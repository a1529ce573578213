"""Optuna studies on a tiny cache: defaults first, pruning through Lightning, the test split
never read, two workers sharing a study on a PostgreSQL server, and a study resumed after a killed worker."""

from __future__ import annotations

import copy
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from anomaly_lens.ml.training.tuning import StudySettings, nested, run_study, summary
from tests.conftest import PROJECT_ROOT, base_parameters
from tests.services import postgres_server


def tiny_train(checkpoints) -> dict:
    train = copy.deepcopy(base_parameters()["train"])
    train["image_size"] = 32
    train["model"]["cbam_stages"] = []
    train["trainer"].update(
        max_epochs=2, batch_size=16, progress_bar=False, checkpoint_dir=str(checkpoints)
    )
    return train


def settings(url: str, n_trials: int, **changes) -> StudySettings:
    values = {
        "study_name": "tiny",
        "storage": url,
        "n_trials": n_trials,
        "heartbeat_seconds": 1,
        "pruner": {"n_startup_trials": 1, "n_warmup_steps": 0},
        "search_space": {
            "optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
        },
    }
    return StudySettings.model_validate(values | changes)


@pytest.fixture
def data(cache, prepared):
    samples = prepared[0]
    ids = samples["sample_id"].tolist()
    return cache, {"train": ids[: len(ids) // 2], "val": ids[len(ids) // 2 :]}


def test_three_trials_start_from_the_defaults_and_prune_through_lightning(
    data, tmp_path, monkeypatch
):
    cache, ids = data
    monkeypatch.setattr(optuna.pruners.MedianPruner, "prune", lambda self, study, trial: True)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = run_study(cache, ids, tiny_train(tmp_path / "ckpt"), settings(url, 3))
    first = study.trials[0]
    assert first.params == {"optimizer.lr": 0.002, "model.dropout": 0.2}  # the train block's
    report = summary(study)
    assert report["n_trials"] == 3 and report["n_pruned"] >= 1  # pruned after the first
    assert report["n_complete"] + report["n_pruned"] == 3
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all(t.intermediate_values for t in pruned)  # reported per epoch by the callback
    assert nested({"optimizer.lr": 1}) == {"optimizer": {"lr": 1}}


def test_the_test_split_is_never_read(data, tmp_path):
    cache, ids = data
    with pytest.raises(ValueError, match="train"):
        run_study(cache, {**ids, "test": ids["val"]}, tiny_train(tmp_path), settings("x", 1))


def _worker(cache_path, url, n_trials, checkpoints) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.ml.tuning_worker",
            str(cache_path),
            url,
            str(n_trials),
            str(checkpoints),
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        stdout=subprocess.DEVNULL,
        stderr=open(Path(cache_path).with_suffix(".log"), "w"),  # noqa: SIM115
    )


def _saved(data, tmp_path):
    cache, ids = data
    path = tmp_path / "cache.pkl"
    path.write_bytes(pickle.dumps((cache.arrays(), ids)))
    return path


def test_two_workers_share_one_study_on_postgresql(data, tmp_path):
    """Two worker processes started together on one PostgreSQL study: every trial runs
    once, none is lost, and the default parameters are queued by one worker only."""
    path = _saved(data, tmp_path)
    with postgres_server() as url:
        workers = [_worker(path, url, 2, tmp_path / f"ckpt{k}") for k in range(2)]
        codes = [w.wait(timeout=600) for w in workers]
        assert codes == [0, 0], path.with_suffix(".log").read_text()[-2000:]
        study = optuna.load_study(study_name="tiny", storage=url)
        report, trials = summary(study), study.trials
    finished = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state in finished for t in trials)
    assert len({t._trial_id for t in trials}) == 4
    defaults = {"optimizer.lr": 0.002, "model.dropout": 0.2}
    assert [t.params for t in trials].count(defaults) == 1
    assert report["n_complete"] + report["n_pruned"] == 4


def test_a_killed_workers_study_resumes(data, tmp_path):
    path, url = _saved(data, tmp_path), f"sqlite:///{tmp_path / 'resume.db'}"
    worker = _worker(path, url, 50, tmp_path / "ckpt_killed")
    finished = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            trials = optuna.load_study(study_name="tiny", storage=url).trials
        except KeyError:  # the study is not created yet
            continue
        if any(t.state in finished for t in trials) and trials[-1].state.name == "RUNNING":
            break
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    done_before = sum(t.state in finished for t in trials)
    time.sleep(3)  # past the heartbeat's grace period: the killed trial is stale
    cache, ids = data
    study = run_study(cache, ids, tiny_train(tmp_path / "ckpt"), settings(url, 1))
    states = [t.state.name for t in study.trials]
    assert states.count("FAIL") == 1  # the trial the kill interrupted
    assert sum(t.state in finished for t in study.trials) == done_before + 1
    retried = [t for t in study.trials if "failed_trial" in t.system_attrs]
    assert len(retried) == 1  # the stale trial was queued again and run by the new worker
