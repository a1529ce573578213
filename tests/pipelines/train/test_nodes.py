"""A tiny end-to-end training run: 1 epoch at 32x32 through the train and evaluate nodes."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from anomaly_lens.datasets import TorchModelDataset
from anomaly_lens.ml.data import imaging, synthetic
from anomaly_lens.ml.data.cache import ImageCache, MultiViewDataset, collate
from anomaly_lens.ml.data.inspection import MaskRule, inspect_records
from anomaly_lens.ml.data.layouts.synthetic import from_synthetic
from anomaly_lens.ml.data.pairing import pair_views
from anomaly_lens.ml.data.splitting import assign_splits, split_identity
from anomaly_lens.ml.models.bundle import load_model
from anomaly_lens.ml.training.curves import plot_training_curves
from anomaly_lens.pipelines.evaluate.nodes import (
    evaluate_baseline,
    evaluate_model,
    headline_metrics,
    plot_evaluation,
)
from anomaly_lens.pipelines.train.nodes import cache_images, train_model
from tests.conftest import base_parameters

VIEWS = ["co2", "ch4"]


def prepare(config: synthetic.SyntheticConfig):
    """Generated data through inspection and pairing, split 60/20/20 by specimen:
    (samples, manifest, masks, raw loaders, classes, splits)."""
    data = synthetic.generate(config)
    encoded = {k: imaging.encode_png(v) for k, v in data.images.items()}
    raw = {k: (lambda c=c: c) for k, c in encoded.items()}
    pattern = base_parameters()["ingestion"]["filename_pattern"]
    result = inspect_records(from_synthetic(raw, data.annotations, pattern), [], MaskRule())
    manifest = result.manifest
    samples, _ = pair_views(
        manifest,
        manifest["specimen_id"] + "|" + manifest["condition"],
        manifest["specimen_id"],
        VIEWS,
        result.classes,
    )
    labels = samples[[f"label_{c}" for c in result.classes]].to_numpy()
    splits = samples[["sample_id", "group_id"]].assign(
        **assign_splits(samples["group_id"], labels, (0.6, 0.2, 0.2), seed=0)
    )
    return samples, manifest, result.masks, raw, result.classes, splits


@pytest.fixture(scope="module")
def prepared():
    return prepare(synthetic.SyntheticConfig(n_specimens=12, image_size=32, seed=2))


def train_tiny(prepared, checkpoints):
    """A one-epoch model without CBAM on the prepared data: (bundle, cache, splits, params)."""
    samples, manifest, masks, raw, classes, splits = prepared
    p = params(checkpoints, cbam_stages=[])
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    return bundle, cache, splits, p


def params(tmp_path, **model) -> dict:
    p = copy.deepcopy(base_parameters()["train"])
    p["image_size"] = 32
    p["model"].update(model)
    p["trainer"].update(
        max_epochs=1, batch_size=8, progress_bar=False, checkpoint_dir=str(tmp_path / "ckpt")
    )
    p["bootstrap_rounds"] = 20
    return p


@pytest.mark.parametrize("task", ["classification", "multitask"])
def test_one_epoch_train_evaluate_and_reload(prepared, tmp_path, task):
    samples, manifest, masks, raw, classes, splits = prepared
    p = params(tmp_path, task=task)
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    bundle, history = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    assert list(history["epoch"]) == [0] and history["val_macro_f1"].notna().all()
    assert isinstance(plot_training_curves(history), Figure)

    metrics, predictions = evaluate_model(bundle, cache, splits, None, p)
    assert {"val", "test", "best_epoch", "n_parameters"} <= set(metrics)
    test = metrics["test"]
    assert len(predictions) == metrics["val"]["n_samples"] + test["n_samples"]
    assert predictions.filter(like="prob_").shape[1] == len(classes)
    assert isinstance(plot_evaluation(predictions, metrics), Figure)
    assert 0 <= test["macro_f1"] <= 1 and set(test["per_class"]) == set(classes)
    assert test["macro_f1_ci95"][0] <= test["macro_f1_ci95"][1]
    assert {"precision", "recall", "f1", "ap", "auroc"} <= set(test["per_class"][classes[0]])
    if task == "multitask":
        assert 0 <= test["segmentation"]["mean_iou"] <= 1
        assert 0 <= test["segmentation"]["defect_iou"] <= 1

    # Saved through the catalog dataset and reloaded: identical outputs.
    store = TorchModelDataset(filepath=str(tmp_path / "model.pt"))
    store.save(bundle)
    original, reloaded = load_model(bundle), load_model(store.load())
    image_cache = ImageCache.from_arrays(cache)
    batch = collate([MultiViewDataset(image_cache, [i])[0] for i in range(4)])
    with torch.no_grad():
        a, b = original(batch.images, batch.view_mask), reloaded(batch.images, batch.view_mask)
    assert torch.equal(a.logits, b.logits)

    # A bundle saved before a key existed (a plain mapping, as every version writes it)
    # loads with the value that describes it.
    older = {k: v for k, v in bundle.to_saved().items() if k != "input_clahe"}
    torch.save(older, tmp_path / "older.pt")
    loaded = TorchModelDataset(filepath=str(tmp_path / "older.pt")).load()
    assert loaded.input_clahe is False and loaded.classes == bundle.classes


def test_segmentation_only_model_is_evaluated_and_plotted(prepared, tmp_path):
    samples, manifest, masks, raw, classes, splits = prepared
    p = params(tmp_path, task="segmentation")
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    with pytest.raises(ValueError, match="monitor=val_loss"):
        train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    p["trainer"].update(monitor="val_loss", mode="min")
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    metrics, predictions = evaluate_model(bundle, cache, splits, None, p)
    assert 0 <= metrics["test"]["segmentation"]["defect_iou"] <= 1 and predictions.empty
    fig = plot_evaluation(predictions, metrics)
    assert "segmentation-only" in fig.axes[0].texts[0].get_text()


def test_a_stale_cache_is_refused(prepared, tmp_path):
    samples, manifest, masks, raw, classes, splits = prepared
    p = params(tmp_path)
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    with pytest.raises(ValueError, match="other inputs"):
        train_model(cache, samples, manifest, splits, classes, VIEWS, {**p, "image_size": 48})


def test_an_auto_image_size_comes_from_the_images_and_travels_with_the_model(prepared, tmp_path):
    """The 32 px photos are read at 32 px (their median shorter side), however large the
    cap; training chooses the same size again, and the model records it and its split."""
    samples, manifest, masks, raw, classes, splits = prepared
    p = {**params(tmp_path), "image_size": "auto", "max_image_size": 224}
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    assert cache["images"].shape[-2:] == (32, 32)
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    assert bundle.image_size == 32 and bundle.split_id == split_identity(splits)


@pytest.mark.parametrize("task", ["classification", "multitask"])
def test_multiclass_data_gets_a_normal_class(prepared, tmp_path, task):
    samples, manifest, masks, raw, classes, splits = prepared
    single = samples.assign(**{f"label_{c}": 0 for c in classes[1:]})  # at most one label each
    p = params(tmp_path, task=task)
    cache = cache_images(single, manifest, masks, raw, classes, VIEWS, p)
    bundle, _ = train_model(cache, single, manifest, splits, classes, VIEWS, p)
    assert bundle.label_type == "multiclass" and bundle.classes == ["normal", *classes]
    metrics, predictions = evaluate_model(bundle, cache, splits, None, p)
    assert len(metrics["test"]["confusion"]) == len(classes) + 1
    if task == "multitask":  # masks of the defect classes only, no "normal" mask
        assert list(metrics["test"]["segmentation"]["per_class"]) == classes
    assert isinstance(plot_evaluation(predictions, metrics), Figure)
    pd.testing.assert_series_equal(single["sample_id"], samples["sample_id"])


def test_per_view_model_is_scored_per_image_and_per_sample(prepared, tmp_path):
    samples, manifest, masks, raw, classes, splits = prepared
    p = {**params(tmp_path, task="multitask"), "per_view": True, "baseline_trees": 30}
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    assert bundle.config["views"] == ["any"] and bundle.views == VIEWS
    metrics, predictions = evaluate_model(bundle, cache, splits, None, p)
    test = predictions[predictions["split"] == "test"]
    n_test = splits["split"].eq("test").sum()
    assert metrics["test"]["n_samples"] == len(test) > n_test  # one item per present view
    assert metrics["test"]["per_sample"]["n_samples"] == test["sample_id"].nunique() == n_test
    assert 0 <= metrics["test"]["segmentation"]["defect_iou"] <= 1
    baselines = evaluate_baseline(bundle, cache, splits, p)
    for name in ("random_forest", "frozen_logistic"):
        assert baselines[name]["test"]["n_samples"] == len(test)


def test_fused_segmentation_of_unregistered_views_is_refused(prepared, tmp_path):
    samples, manifest, masks, raw, classes, splits = prepared
    p = params(tmp_path, task="multitask")
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    shapes = cache["view_shapes"].copy()
    shapes[:, 1] += 8  # as if every ch4 image had been cropped differently
    with pytest.raises(ValueError, match="registered views.*per_view=true"):
        train_model({**cache, "view_shapes": shapes}, samples, manifest, splits, classes, VIEWS, p)


def test_baselines_are_scored_like_the_model_and_shown_beside_it(prepared, tmp_path):
    samples, manifest, masks, raw, classes, splits = prepared
    p = {**params(tmp_path), "baseline_trees": 30}
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, p)
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, p)
    report = evaluate_baseline(bundle, cache, splits, p)
    for name in ("random_forest", "frozen_logistic"):
        assert report[name]["model"] == name and report[name]["classes"] == bundle.classes
        for split in ("val", "test"):
            assert 0 <= report[name][split]["macro_f1"] <= 1
            assert set(report[name][split]["per_class"]) <= set(bundle.classes)
    metrics, _ = evaluate_model(bundle, cache, splits, report, p)
    beside = metrics["baselines"]["frozen_logistic"]["test"]
    assert beside["macro_f1"] == report["frozen_logistic"]["test"]["macro_f1"]
    headline = headline_metrics(metrics)
    assert headline["test_macro_f1_random_forest"]["value"] == pytest.approx(
        report["random_forest"]["test"]["macro_f1"]
    )
    # a baseline of another split is never shown as if it were this one's
    moved = splits.assign(split=splits["split"].replace({"val": "test", "test": "val"}))
    other, _ = evaluate_model(bundle, cache, moved, report, p)
    assert set(other["baselines"]) == {"note"}


def test_a_padded_model_is_trained_on_its_own_cache_and_says_so(prepared, tmp_path):
    samples, manifest, masks, raw, classes, splits = prepared
    stretched = params(tmp_path)
    padded = {**stretched, "resize": "pad"}
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, stretched)
    with pytest.raises(ValueError, match="built from other inputs"):
        train_model(cache, samples, manifest, splits, classes, VIEWS, padded)
    cache = cache_images(samples, manifest, masks, raw, classes, VIEWS, padded)
    bundle, _ = train_model(cache, samples, manifest, splits, classes, VIEWS, padded)
    assert bundle.resize == "pad"  # inference, export and the served model read it from here
