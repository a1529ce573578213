import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.data.cache import collate
from anomaly_lens.ml.models import ModelConfig, create_model, load_matching_weights
from anomaly_lens.ml.training.fit import fit
from anomaly_lens.ml.training.module import TrainingModule, mix_batch, warmup_cosine
from anomaly_lens.ml.training.resume import run_fingerprint
from anomaly_lens.ml.training.settings import (
    LossSettings,
    OptimizerSettings,
    TrainerSettings,
    TrainSettings,
)


def batch():
    images = torch.stack([torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)])
    return Batch(
        images,
        torch.tensor([[True], [False]]),
        labels=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        masks=torch.stack([torch.zeros(2, 8, 8), torch.ones(2, 8, 8)]),
    )


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
def test_mixing_mixes_labels_as_much_as_pixels(mode):
    mixed = mix_batch(batch(), mode, alpha=1.0, generator=torch.Generator().manual_seed(1))
    pixel_share = mixed.images.mean(dim=(1, 2, 3, 4))  # share of the all-ones sample
    assert torch.allclose(mixed.labels[:, 1], pixel_share, atol=1e-6)
    assert torch.allclose(mixed.masks.mean(dim=(2, 3))[:, 0], pixel_share, atol=1e-6)
    assert mixed.view_mask.all()  # sample 1's missing view is present in the mix


def test_no_mixing_and_unknown_mode():
    b = batch()
    assert mix_batch(b, "none", 0.4, torch.Generator()) is b
    with pytest.raises(ValueError, match="mixing"):
        mix_batch(b, "mosaic", 0.4, torch.Generator())


def test_warmup_then_cosine():
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0)


def test_fine_tuning_keeps_the_encoder_and_renews_the_head():
    old = create_model(ModelConfig(num_classes=3, views=["a"]))
    new = create_model(ModelConfig(num_classes=5, views=["a"]))
    copied = load_matching_weights(new, old.state_dict())
    assert copied["skipped"] == ["classifier.linear.bias", "classifier.linear.weight"]
    name = "fusion.views.encoders.0.backbone.conv1.weight"
    assert torch.equal(new.state_dict()[name], old.state_dict()[name])


def small_module(freeze_encoder_epochs: int = 0) -> TrainingModule:
    return TrainingModule(
        ModelConfig(num_classes=2, views=["a"], backbone="resnet18", cbam_stages=[]),
        LossSettings(classification="bce", segmentation="dice"),
        OptimizerSettings(lr=0.01, weight_decay=0.0, warmup_fraction=0.0),
        [0.5, 0.5],
        freeze_encoder_epochs=freeze_encoder_epochs,
    )


def small_loader() -> DataLoader:
    items = [
        {
            "images": torch.rand(1, 1, 32, 32) * (i + 1),
            "view_mask": torch.tensor([True]),
            "labels": torch.tensor([float(i % 2), float(1 - i % 2)]),
            "masks": torch.zeros(2, 32, 32),
            "sample_id": str(i),
        }
        for i in range(8)
    ]
    return DataLoader(items, batch_size=4, collate_fn=collate)


def test_a_frozen_encoder_keeps_its_weights_and_batch_norm_statistics(tmp_path):
    """During frozen epochs only the head learns: the encoder's weights and its
    batch-norm running statistics (pretrained ones, in practice) stay as they were."""
    module = small_module(freeze_encoder_epochs=1)
    encoder = module.model.fusion.views.encoders[0]
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    head = module.model.classifier.linear.weight.clone()
    L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    ).fit(module, small_loader())
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "num_batches" not in k)
    assert not torch.equal(head, module.model.classifier.linear.weight)  # the head learnt


def test_a_fresh_fit_replaces_its_own_checkpoints_only(tmp_path):
    """A fresh run's checkpoint folder holds other runs' folders (cv folds, binary models,
    tuning trials): it replaces an earlier run's best/last files and keeps those folders."""
    fold = tmp_path / "cv" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "last.ckpt").write_bytes(b"another run's checkpoint")
    (tmp_path / "best.ckpt").write_bytes(b"an earlier run's checkpoint")
    settings = TrainerSettings(max_epochs=1, progress_bar=False, checkpoint_dir=str(tmp_path))
    result = fit(small_module(), small_loader(), small_loader(), settings)
    assert result.best_epoch == 0
    assert (fold / "last.ckpt").read_bytes() == b"another run's checkpoint"
    best = torch.load(tmp_path / "best.ckpt", map_location="cpu", weights_only=False)
    assert best["epoch"] == 0 and (tmp_path / "last.ckpt").is_file()


def test_the_last_checkpoint_holds_the_best_score_so_far(tmp_path):
    """`last.ckpt` is what a resumed run starts from: it must know the best score, or the
    resumed run would replace a better `best.ckpt` with a worse epoch."""
    settings = TrainerSettings(max_epochs=1, progress_bar=False, checkpoint_dir=str(tmp_path))
    result = fit(small_module(), small_loader(), small_loader(), settings)
    last = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    (best_state,) = [
        v for k, v in last["callbacks"].items() if k.startswith("ModelCheckpoint") and v["monitor"]
    ]
    assert float(best_state["best_model_score"]) == pytest.approx(
        result.history["val_macro_f1"].iloc[0]
    )


def test_the_moving_average_is_what_is_validated_and_returned(tmp_path):
    """With ``ema_decay`` the best checkpoint holds the averaged weights, apart from the
    raw ones, and its recorded validation is that of the weights returned."""
    L.seed_everything(0)
    settings = TrainerSettings(
        max_epochs=2, ema_decay=0.5, progress_bar=False, checkpoint_dir=str(tmp_path)
    )
    val = small_loader()
    result = fit(small_module(), small_loader(), val, settings)
    best = torch.load(tmp_path / "best.ckpt", map_location="cpu", weights_only=False)
    name = "model.classifier.linear.weight"
    assert not torch.equal(best["state_dict"][name], best["current_model_state"][name])
    assert torch.equal(result.state_dict[name.removeprefix("model.")], best["state_dict"][name])
    module = small_module()
    module.model.load_state_dict(result.state_dict)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    (scores,) = trainer.validate(module, val, verbose=False)
    recorded = result.history.iloc[result.best_epoch]
    assert scores["val_loss"] == pytest.approx(recorded["val_loss"], rel=1e-5)


def test_the_history_holds_each_epochs_mean_training_loss(tmp_path):
    """``train_loss`` in the history (and MLflow) is the mean over the epoch's batches,
    weighted by their size, not the last batch's loss."""

    class Losses(L.Callback):
        def __init__(self):
            self.seen: list[tuple[int, float, int]] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.seen.append((trainer.current_epoch, float(outputs["loss"]), batch.size))

    L.seed_everything(0)
    losses = Losses()
    settings = TrainerSettings(max_epochs=2, progress_bar=False, checkpoint_dir=str(tmp_path))
    loader = DataLoader(list(small_loader().dataset)[:7], batch_size=4, collate_fn=collate)
    result = fit(small_module(), loader, None, settings, callbacks=[losses])
    for epoch in (0, 1):
        rows = [(loss, size) for e, loss, size in losses.seen if e == epoch]
        assert len(rows) == 2 and rows[0][0] != rows[1][0]
        mean = sum(loss * size for loss, size in rows) / sum(size for _, size in rows)
        assert result.history["train_loss"].iloc[epoch] == pytest.approx(mean, rel=1e-5)


def test_without_validation_every_epoch_is_trained_and_the_last_kept(tmp_path):
    """No validation part (``cv.validation: none``): no early stopping, however short the
    patience, and the weights returned are the last epoch's."""
    L.seed_everything(0)
    settings = TrainerSettings(
        max_epochs=3, patience=0, progress_bar=False, checkpoint_dir=str(tmp_path)
    )
    result = fit(small_module(), small_loader(), None, settings)
    assert result.best_epoch == 2 and result.history["epoch"].tolist() == [0, 1, 2]
    assert not [c for c in result.history.columns if c.startswith("val_")]
    last = torch.load(tmp_path / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2
    for name, tensor in last["state_dict"].items():
        assert torch.equal(result.state_dict[name.removeprefix("model.")], tensor), name


@pytest.mark.parametrize("ended_by", ["max_epochs", "patience"])
def test_resuming_an_ended_run_trains_no_further(tmp_path, monkeypatch, ended_by):
    """A run that had ended (its last epoch, or early stopping) is not trained one epoch
    more on resume; its history and best epoch come back as they were."""
    L.seed_everything(0)
    patience = 0 if ended_by == "patience" else 10
    settings = TrainerSettings(
        max_epochs=3 if ended_by == "max_epochs" else 8,
        patience=patience,
        progress_bar=False,
        checkpoint_dir=str(tmp_path),
    )
    first = fit(small_module(), small_loader(), small_loader(), settings)
    if ended_by == "patience":
        assert len(first.history) < settings.max_epochs  # early stopping ended it
    last = (tmp_path / "last.ckpt").read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("an ended run was trained again")

    monkeypatch.setattr(L.Trainer, "fit", no_training)
    again = fit(small_module(), small_loader(), small_loader(), settings, resume=True)
    assert again.best_epoch == first.best_epoch
    assert (tmp_path / "last.ckpt").read_bytes() == last
    assert again.history.equals(first.history.astype(again.history.dtypes))
    assert all(torch.equal(again.state_dict[k], v) for k, v in first.state_dict.items())


def test_a_resume_of_another_run_is_refused(tmp_path):
    """`last.ckpt` continues only the run that wrote it: another fingerprint (settings,
    data or items, e.g. another cv fold assignment) is refused before any training."""
    settings = TrainerSettings(max_epochs=2, progress_bar=False, checkpoint_dir=str(tmp_path))
    fit(small_module(), small_loader(), small_loader(), settings, fingerprint="run a")
    with pytest.raises(ValueError, match="other training settings, data or train/val items"):
        fit(small_module(), small_loader(), small_loader(), settings, True, fingerprint="run b")
    again = fit(small_module(), small_loader(), small_loader(), settings, True, fingerprint="run a")
    assert again.best_epoch in (0, 1)


def test_the_fingerprint_ignores_what_a_resume_may_change():
    settings = TrainSettings()
    parts = {"train": ["a", "b"], "val": ["c"]}
    same = run_fingerprint(settings, "cache", parts)
    stopped_and_shown_otherwise = settings.model_copy(
        update={
            "resume": True,
            "trainer": settings.trainer.model_copy(update={"patience": 1, "progress_bar": False}),
        }
    )
    assert run_fingerprint(stopped_and_shown_otherwise, "cache", parts) == same
    learning_otherwise = settings.model_copy(
        update={"optimizer": settings.optimizer.model_copy(update={"lr": 0.5})}
    )
    assert run_fingerprint(learning_otherwise, "cache", parts) != same
    assert run_fingerprint(settings, "other images", parts) != same
    assert run_fingerprint(settings, "cache", {**parts, "val": ["b"]}) != same
