"""Resume after an interruption ends where an uninterrupted run ends; DDP with 2 processes,
on one machine and as two machines."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pandas as pd
import pytest
import torch

from anomaly_lens.browser import free_port
from anomaly_lens.ml.training.fit import EpochHistory
from anomaly_lens.pipelines.train.nodes import cache_images, train_model

from .test_nodes import VIEWS, params, prepared  # noqa: F401  (fixture)


class Interrupted(RuntimeError):
    pass


def last_state(folder):
    """The epoch, weights (with a moving average: the raw ones too) and optimiser state."""
    checkpoint = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=False)
    weights = checkpoint["state_dict"] | {
        f"raw.{name}": value for name, value in checkpoint.get("current_model_state", {}).items()
    }
    return checkpoint["epoch"], weights, checkpoint["optimizer_states"][0]["state"]


@pytest.mark.slow
@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_resumed_run_ends_in_the_same_state(prepared, tmp_path, monkeypatch, ema_decay):  # noqa: F811
    samples, manifest, masks, raw, classes, splits = prepared
    straight = params(tmp_path / "straight")
    straight["trainer"].update(max_epochs=3, patience=10, ema_decay=ema_decay)
    straight["model"].update(dropout=0.5)  # randomness in the model too
    straight["augmentation"].update(preset="medium", modality_dropout=0.3)
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, straight)
    _, straight_history = train_model(cache, samples, manifest, splits, classes, VIEWS, straight)

    broken = {
        **straight,
        "trainer": {**straight["trainer"], "checkpoint_dir": str(tmp_path / "broken")},
    }
    original = EpochHistory.on_train_epoch_end

    def crash_after_second_epoch(self, trainer, module):
        original(self, trainer, module)
        if trainer.current_epoch == 1:
            raise Interrupted("power cut")

    monkeypatch.setattr(EpochHistory, "on_train_epoch_end", crash_after_second_epoch)
    with pytest.raises(Interrupted):
        train_model(cache, samples, manifest, splits, classes, VIEWS, broken)
    monkeypatch.setattr(EpochHistory, "on_train_epoch_end", original)
    # Epoch 1 was checkpointed after its validation, then the run died.
    assert last_state(tmp_path / "broken")[0] == 1
    resumed = {**broken, "resume": True}
    _, resumed_history = train_model(cache, samples, manifest, splits, classes, VIEWS, resumed)

    epoch_a, weights_a, optim_a = last_state(tmp_path / "straight" / "ckpt")
    epoch_b, weights_b, optim_b = last_state(tmp_path / "broken")
    assert epoch_a == epoch_b == 2  # the last of 3 epochs
    assert any(name.startswith("raw.") for name in weights_a) == (ema_decay is not None)
    for name in weights_a:
        assert torch.allclose(weights_a[name].float(), weights_b[name].float(), atol=1e-6), name
    assert all(
        torch.allclose(optim_a[k]["exp_avg"], optim_b[k]["exp_avg"], atol=1e-6) for k in optim_a
    )
    # The history covers every epoch, those before the interruption too, once each.
    assert resumed_history["epoch"].tolist() == straight_history["epoch"].tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(resumed_history, straight_history, check_dtype=False, atol=1e-5)


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(prepared, tmp_path):  # noqa: F811
    samples, manifest, masks, raw, classes, splits = prepared
    p = params(tmp_path)
    p["trainer"].update(strategy="ddp_spawn", devices=2)
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    assert bundle.best_epoch == 0 and bundle.n_parameters > 0
    assert (tmp_path / "ckpt" / "best.ckpt").is_file()


TRAIN_AS_ONE_MACHINE = """
import pickle, sys, torch
from anomaly_lens.pipelines.train.nodes import train_model
with open(sys.argv[1], "rb") as f:
    arguments = pickle.load(f)
bundle, _ = train_model(*arguments)
torch.save(bundle.state_dict, sys.argv[2])
"""


@pytest.mark.slow
def test_two_machines_train_one_model(prepared, tmp_path):  # noqa: F811
    """Two processes as two machines (num_nodes=2, NODE_RANK 0 and 1) form one DDP group
    over MASTER_ADDR/MASTER_PORT, sharing the checkpoint folder as a shared file system."""
    samples, manifest, masks, raw, classes, splits = prepared
    p = params(tmp_path)
    p["trainer"].update(strategy="ddp", devices=1, num_nodes=2)
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    inputs = tmp_path / "inputs.pkl"
    inputs.write_bytes(pickle.dumps((cache, samples, manifest, splits, classes, VIEWS, p)))
    port = str(free_port())
    machines = [
        subprocess.Popen(
            [sys.executable, "-c", TRAIN_AS_ONE_MACHINE, str(inputs), str(tmp_path / f"{rank}.pt")],
            env={
                **os.environ,
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
                "NODE_RANK": str(rank),
                "WORLD_SIZE": "2",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = [machine.communicate(timeout=600)[0] for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], logs
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1], logs[1]
    first, second = (torch.load(tmp_path / f"{rank}.pt") for rank in (0, 1))
    assert all(torch.equal(first[name], second[name]) for name in first)
