"""Cross-validation on a tiny synthetic set: every item predicted once, by a model that
never saw its unit; pooled report, feature baseline, nested MLflow runs per fold."""

from __future__ import annotations

import copy

import lightning as L
import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.evaluation.crossval import fold_parts
from anomaly_lens.ml.evaluation.metrics import classification_metrics
from anomaly_lens.ml.evaluation.predictions import mask_classes, pixel_counts
from anomaly_lens.ml.models import load_matching_weights
from anomaly_lens.ml.training import core as training_core
from anomaly_lens.ml.training.fit import EpochHistory
from anomaly_lens.pipelines.cv.nodes import (
    assign_cv_folds,
    cross_validate,
    cross_validate_anomaly_scores,
    cross_validate_baseline,
    nested_baseline,
    summarise_cv,
    summarise_gate,
)
from anomaly_lens.pipelines.train.nodes import cache_images, train_model
from tests.conftest import base_parameters
from tests.pipelines.train.test_nodes import VIEWS, params, prepared  # noqa: F401

CV = {**base_parameters()["cv"], "folds": 3, "candidates": 3}


class Interrupted(RuntimeError):
    pass


@pytest.mark.slow
def test_cross_validation_predicts_every_item_once_out_of_fold(prepared, tmp_path):  # noqa: F811
    samples, manifest, masks, raw, classes, splits = prepared
    train = params(tmp_path, task="multitask")  # masks as well: pooled pixel counts
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, train)
    folds = assign_cv_folds(cache, splits, train, CV)
    assert sorted(folds["fold"].unique()) == [0, 1, 2]
    assert folds.groupby("unit_id")["fold"].nunique().max() == 1  # a specimen stays in one fold
    for k in range(3):  # a round never fits or early-stops on its test fold
        parts = fold_parts(folds["fold"].to_numpy(), k, "next_fold")
        assert set(folds["fold"].to_numpy()[parts["test"]]) == {k}
        assert k not in set(folds["fold"].to_numpy()[np.r_[parts["train"], parts["val"]]])

    with mlflow.start_run() as parent:
        predictions, history = cross_validate(
            cache, samples, manifest, folds, classes, VIEWS, train, CV
        )
        baseline = cross_validate_baseline(cache, folds, train, CV)
        report, headline = summarise_cv(predictions, baseline, folds, train, CV)
    # The fused model's items are samples; each present photo is a row with its sample's
    # prediction, so the headline figure is per photo whichever the model.
    image_cache = ImageCache.from_arrays(cache)
    photos = dict(zip(image_cache.sample_ids, image_cache.view_mask.sum(1), strict=True))
    per_sample = predictions.groupby("sample_id")
    assert predictions["item_id"].is_unique
    assert sorted(per_sample.groups) == sorted(folds["sample_id"])
    assert all(per_sample.size()[s] == photos[s] for s in per_sample.groups)
    assert (per_sample[[f"prob_{c}" for c in report["classes"]]].nunique() == 1).all(axis=None)
    merged = predictions.merge(folds, on=["sample_id", "unit_id"], suffixes=("", "_assigned"))
    assert len(merged) == len(predictions) and (merged["fold"] == merged["fold_assigned"]).all()
    assert sorted(history["fold"].unique()) == [0, 1, 2]

    prob = predictions[[f"prob_{c}" for c in report["classes"]]].to_numpy(np.float32)
    target = predictions[[f"target_{c}" for c in report["classes"]]].to_numpy(np.float32)
    label_type = "multilabel" if (target.sum(1) > 1).any() else "multiclass"
    pooled = classification_metrics(
        torch.from_numpy(prob), torch.from_numpy(target), report["classes"], label_type
    )
    assert report["oof"]["macro_f1"] == pytest.approx(pooled["macro_f1"])
    low, high = report["oof"]["macro_f1_ci95"]
    assert 0 <= low <= high <= 1
    assert report["folds"] == 3 and len(report["per_fold"]) == 3
    # What the model learnt from and how it was read, for the leakage report's comparison.
    assert report["train"]["seed"] == train["seed"] and report["train"]["tta"] == "hflip"
    assert "checkpoint_dir" not in report["train"]["trainer"] and "resume" not in report["train"]
    assert report["oof"]["n_items"] == report["baseline"]["oof"]["n_items"] == len(predictions)
    assert report["oof_tile"]["n_items"] == len(folds)
    assert headline["oof_tile_macro_f1"]["value"] == report["oof_tile"]["macro_f1"]
    assert headline["oof_macro_f1"]["value"] == report["oof"]["macro_f1"]
    # Every pixel of a photo is counted once per mask class; pooled counts give the IoU.
    counts = pixel_counts(predictions, report["classes"])
    assert counts.shape == (len(predictions), len(mask_classes(report["classes"])) + 1, 4)
    assert (counts.sum(-1) == train["image_size"] ** 2).all()
    tp, fp, _, fn = counts[:, -1].sum(0).double()
    segmentation = report["oof"]["segmentation"]
    assert segmentation["defect_iou"] == pytest.approx(float(tp / (tp + fp + fn)))
    assert headline["oof_defect_iou"]["value"] == segmentation["defect_iou"]
    assert "segmentation" not in report["baseline"]["oof"]
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 3
    grouped = [tmp_path / "ckpt" / "cv" / f"fold_{k}" / "best.ckpt" for k in range(3)]
    assert all(path.is_file() for path in grouped)
    assert not (tmp_path / "ckpt" / "leaky_cv").exists()

    # The one-class detector on the same folds: every photo scored once, by the detector
    # of its own fold, and the gate in front of the network and the baseline.
    anomaly = {**base_parameters()["anomaly"], "max_train_images": 40, "bootstrap_rounds": 20}
    scores = cross_validate_anomaly_scores(cache, folds, anomaly, train)
    assert sorted(scores["item_id"]) == sorted(predictions["item_id"])
    fold_of = predictions.set_index("item_id")["fold"]
    assert (scores["fold"].to_numpy() == fold_of.loc[scores["item_id"]].to_numpy()).all()
    assert scores.groupby("fold")["threshold"].nunique().eq(1).all()
    gated, gate_report, gate_headline = summarise_gate(scores, predictions, baseline, train, CV)
    network = gate_report["network"]
    assert network["against_classifier_alone"]["reference"]["macro_f1"] == pytest.approx(
        report["oof"]["macro_f1"]
    )
    assert network["against_classifier_alone"]["candidate"]["macro_f1"] == pytest.approx(
        network["oof"]["macro_f1"]
    )
    passed = gated.set_index("item_id").loc[scores.loc[~scores["anomalous"], "item_id"]]
    assert (passed[[f"prob_{c}" for c in report["classes"]]].to_numpy() == 0).all()  # multilabel
    assert gate_headline["gate_minus_network"]["value"] == pytest.approx(
        network["oof"]["macro_f1"] - report["oof"]["macro_f1"]
    )
    assert 0 <= gate_report["one_class"]["per_photo"]["auroc"] <= 1
    assert len(gate_report["one_class"]["per_fold_auroc"]) == 3

    # The baseline's setting chosen on inner folds, scored on the outer ones.
    cv = {**CV, "nested": {"backbones": ["tf_efficientnet_lite0"], "c": [0.1, 1.0]}}
    nested, nested_headline = nested_baseline(cache, folds, train, cv)
    assert nested["nested"]["oof"]["n_items"] == len(predictions)
    assert [c["fold"] for c in nested["outer_choices"]] == [0, 1, 2]
    assert nested["selected"]["oof_macro_f1"] == max(
        c["oof_macro_f1"] for c in nested["candidates"]
    )
    assert nested_headline["nested_baseline_oof_macro_f1"]["value"] == pytest.approx(
        nested["nested"]["oof"]["macro_f1"]
    )


def test_a_round_trains_on_every_fold_but_its_test_fold_and_validation():
    fold_of_item = np.array([0, 1, 2, 0, 1, 2, 3])
    validated = fold_parts(fold_of_item, 3, "next_fold")  # the next fold wraps round to 0
    assert validated["test"].tolist() == [6] and validated["val"].tolist() == [0, 3]
    assert validated["train"].tolist() == [1, 2, 4, 5]
    unvalidated = fold_parts(fold_of_item, 3, "none")
    assert unvalidated["val"].size == 0 and unvalidated["train"].tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="cv validation must be one of"):
        fold_parts(fold_of_item, 0, "last_fold")


@pytest.mark.slow
@pytest.mark.parametrize("validation", ["next_fold", "none"])
def test_an_interrupted_cross_validation_resumes_where_it_stopped(
    prepared,  # noqa: F811
    tmp_path,
    monkeypatch,
    validation,
):
    """With ``train.resume`` the folds that had ended are predicted again from their
    checkpoints, not trained; the fold that was cut off trains on from its last epoch;
    predictions and histories are the uninterrupted run's."""
    samples, manifest, masks, raw, classes, splits = prepared
    cv = {**CV, "validation": validation}
    straight = params(tmp_path / "straight")
    straight["trainer"].update(max_epochs=2, patience=10)
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, straight)
    folds = assign_cv_folds(cache, splits, straight, cv)
    expected = cross_validate(cache, samples, manifest, folds, classes, VIEWS, straight, cv)
    if validation == "none":  # every epoch trained, the last one kept
        assert not [c for c in expected[1].columns if c.startswith("val_")]

    broken = copy.deepcopy(straight)
    broken["trainer"]["checkpoint_dir"] = str(tmp_path / "broken")
    epochs_run, record = [], EpochHistory.on_train_epoch_end

    def count(self, trainer, module):
        record(self, trainer, module)
        epochs_run.append(trainer.current_epoch)

    def crash_in_the_last_fold(self, trainer, module):
        if len(epochs_run) == 5:  # folds 0 and 1 ended, fold 2 has done one epoch
            raise Interrupted("power cut")

    with monkeypatch.context() as patched:
        patched.setattr(EpochHistory, "on_train_epoch_end", count)
        patched.setattr(EpochHistory, "on_train_epoch_start", crash_in_the_last_fold)
        with pytest.raises(Interrupted):
            cross_validate(cache, samples, manifest, folds, classes, VIEWS, broken, cv)

    trained, lightning_fit = [], L.Trainer.fit

    def counted_fit(self, *args, **kwargs):
        trained.append(kwargs.get("ckpt_path"))
        return lightning_fit(self, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "fit", counted_fit)
    resumed = cross_validate(
        cache, samples, manifest, folds, classes, VIEWS, {**broken, "resume": True}, cv
    )
    assert trained == [tmp_path / "broken" / "cv" / "fold_2" / "last.ckpt"]  # fold 2 alone
    pd.testing.assert_frame_equal(resumed[0], expected[0], atol=1e-5)
    pd.testing.assert_frame_equal(resumed[1], expected[1], check_dtype=False, atol=1e-5)
    # Other folds would have trained on tiles that they now test: refused, nothing trained.
    other_folds = assign_cv_folds(cache, splits, straight, {**cv, "folds": 4})
    assert not other_folds["fold"].equals(folds["fold"])
    with pytest.raises(ValueError, match="other training settings, data or train/val items"):
        cross_validate(
            cache, samples, manifest, other_folds, classes, VIEWS, {**broken, "resume": True}, cv
        )
    assert len(trained) == 1


@pytest.mark.slow
def test_random_folds_keep_their_checkpoints_apart_from_the_grouped_folds(prepared, tmp_path):  # noqa: F811
    samples, manifest, masks, raw, classes, splits = prepared
    train = params(tmp_path)
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, train)
    grouped_fold = tmp_path / "ckpt" / "cv" / "fold_0"
    grouped_fold.mkdir(parents=True)
    (grouped_fold / "best.ckpt").write_bytes(b"the grouped run's")
    leaky = {**CV, "group_by": "none"}
    folds = assign_cv_folds(cache, splits, train, leaky)
    cross_validate(cache, samples, manifest, folds, classes, VIEWS, train, leaky)
    assert (grouped_fold / "best.ckpt").read_bytes() == b"the grouped run's"
    assert all(
        (tmp_path / "ckpt" / "leaky_cv" / f"fold_{k}" / "best.ckpt").is_file() for k in range(3)
    )


def test_random_grouping_puts_every_item_on_its_own(prepared, tmp_path):  # noqa: F811
    samples, manifest, masks, raw, classes, splits = prepared
    train = copy.deepcopy(params(tmp_path))
    train["per_view"] = True  # items are single photos, as for Magnetic Tile
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, train)
    grouped = assign_cv_folds(cache, splits, train, CV)
    leaky = assign_cv_folds(cache, splits, train, {**CV, "group_by": "none"})
    assert grouped["sample_id"].nunique() < len(grouped)  # several photos per sample
    assert grouped.groupby("sample_id")["fold"].nunique().max() == 1
    assert leaky["unit_id"].nunique() == len(leaky)
    assert leaky.groupby("sample_id")["fold"].nunique().max() > 1  # the leak it measures
    fused = assign_cv_folds(cache, splits, {**train, "per_view": False}, CV)
    assert fused["sample_id"].is_unique  # a fused model's items are samples, on the same folds
    photo_folds = grouped.groupby("sample_id")["fold"].first()
    assert fused.set_index("sample_id")["fold"].equals(photo_folds.loc[fused["sample_id"]])


def test_a_segmentation_only_model_is_refused_before_any_training(prepared, tmp_path):  # noqa: F811
    samples, manifest, masks, raw, classes, splits = prepared
    train = params(tmp_path, task="segmentation")
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, train)
    folds = assign_cv_folds(cache, splits, train, CV)
    with pytest.raises(ValueError, match="segmentation-only model"):
        cross_validate(cache, samples, manifest, folds, classes, VIEWS, train, CV)
    assert not (tmp_path / "ckpt").exists()  # no fold was fitted


def test_a_train_setting_reaches_train_and_cv_alike(prepared, tmp_path, monkeypatch):  # noqa: F811
    """One training core: ``train.init_from`` starts the `train` model and every `cv` fold's
    model from the saved weights alike."""
    samples, manifest, masks, raw, classes, splits = prepared
    train = params(tmp_path, cbam_stages=[])
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, train)
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, train)
    source = tmp_path / "source.pt"
    torch.save(bundle.to_saved(), source)
    loaded = []

    def counted(model, state_dict):
        copied = load_matching_weights(model, state_dict)
        loaded.append(len(copied["loaded"]))
        return copied

    monkeypatch.setattr(training_core, "load_matching_weights", counted)
    fine = copy.deepcopy(train) | {"init_from": str(source)}
    fine["trainer"]["checkpoint_dir"] = str(tmp_path / "fine")
    train_model(cache, samples, manifest, splits, classes, VIEWS, fine)
    folds = assign_cv_folds(cache, splits, fine, CV)
    cross_validate(cache, samples, manifest, folds, classes, VIEWS, fine, CV)
    tensors = len(bundle.state_dict)
    assert loaded == [tensors] * (1 + CV["folds"])  # train, then each fold: every tensor
