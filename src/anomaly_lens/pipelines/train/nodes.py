"""Nodes of the ``train`` pipeline."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import lightning as L
import mlflow
import numpy as np
import pandas as pd
import torch
import torchmetrics.functional.classification as tmc
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from matplotlib.figure import Figure
from torch.utils.data import DataLoader

from anomaly_lens.ml import baseline
from anomaly_lens.ml.data import (
    EpochSampler,
    ImageCache,
    MultiViewDataset,
    augmentation,
    balanced_weights,
    build_image_cache,
    cache_fingerprint,
    collate,
)
from anomaly_lens.ml.metrics import (
    bootstrap_interval,
    classification_metrics,
    json_safe,
    segmentation_stats,
    segmentation_summary,
)
from anomaly_lens.ml.models import ModelConfig, create_model, load_matching_weights
from anomaly_lens.ml.training import AnomalyModule, probabilities

logger = logging.getLogger(__name__)

PER_VIEW_SLOT = "any"  # the one view slot of a per-view model (it sees every view alike)


def cache_images(
    samples: pd.DataFrame,
    manifest: pd.DataFrame,
    masks: pd.DataFrame,
    raw_images: Mapping[str, Callable[[], bytes]],
    class_names: list[str],
    views: list[str],
    params: dict,
) -> dict[str, np.ndarray]:
    """Decode and resize every sample's views once; later runs reuse the arrays."""
    cache = build_image_cache(
        samples,
        manifest,
        masks,
        lambda pid: raw_images[pid](),
        views=views,
        classes=class_names,
        image_size=params["image_size"],
    )
    logger.info(
        "Image cache: %s samples x %s views at %d px", *cache.images.shape[:2], params["image_size"]
    )
    return cache.arrays()


def _label_type(labels: np.ndarray, requested: str) -> str:
    """``multilabel`` when any sample has two labels, else ``multiclass`` (``auto``)."""
    if requested != "auto":
        return requested
    return "multilabel" if (labels.sum(1) > 1).any() else "multiclass"


def _task(cache: ImageCache, params: dict) -> tuple[str, np.ndarray, list[str]]:
    """Label type, targets per cache position and class names of the task the data pose."""
    label_type = _label_type(cache.labels, params["label_type"])
    classes = (["normal"] if label_type == "multiclass" else []) + list(cache.classes)
    return label_type, _targets(cache.labels, label_type), classes


def _targets(labels: np.ndarray, label_type: str) -> np.ndarray:
    """Multi-hot targets, or one-hot with a leading ``normal`` class for multi-class data."""
    if label_type == "multilabel":
        return labels.astype(np.float32)
    return np.column_stack([labels.sum(1) == 0, labels]).astype(np.float32)


def _datasets(
    cache: ImageCache,
    splits: pd.DataFrame,
    params: dict,
    targets: np.ndarray,
    views: list[str],
    per_view: bool,
) -> dict[str, MultiViewDataset]:
    """The train/val/test datasets (augmented train); samples without the views are logged."""
    view_index = [cache.views.index(v) for v in views]
    settings = params["augmentation"]
    datasets = {}
    for split in ("train", "val", "test"):
        ids = splits.loc[splits["split"] == split, "sample_id"].tolist()
        training = split == "train"
        datasets[split] = dataset = MultiViewDataset(
            cache,
            cache.positions(ids),
            targets=targets,
            view_index=view_index,
            per_view=per_view,
            transform=augmentation(
                settings["preset"] if training else "none",
                1 if per_view else len(view_index),
                settings["clahe"],
                seed=params["seed"],
            ),
            modality_dropout=settings["modality_dropout"] if training else 0.0,
            seed=params["seed"],
        )
        if dataset.without_views:
            logger.warning(
                "%s: %d samples have none of the views %s and are left out: %s",
                split,
                len(dataset.without_views),
                views,
                ", ".join(dataset.without_views[:5]),
            )
    return datasets


def _loaders(datasets: dict[str, MultiViewDataset], params: dict) -> dict[str, DataLoader]:
    """Batches of each split; train drawn by the epoch-seeded (optionally balanced) sampler."""
    train = datasets["train"]
    weights = (
        balanced_weights(train.targets[train.positions]) if params["balanced_sampler"] else None
    )
    samplers = {"train": EpochSampler(len(train), params["seed"], weights)}
    return {
        split: DataLoader(
            dataset,
            batch_size=params["trainer"]["batch_size"],
            sampler=samplers.get(split),
            collate_fn=collate,
            num_workers=params["trainer"]["num_workers"],
        )
        for split, dataset in datasets.items()
    }


def _check_registered(cache: ImageCache, views: list[str], params: dict) -> None:
    """Refuse one mask for fused views whose pixels do not correspond."""
    if params["model"]["task"] == "classification" or params["per_view"] or len(views) < 2:
        return
    unregistered = cache.unregistered([cache.views.index(v) for v in views])
    if len(unregistered):
        raise ValueError(
            f"Segmentation of fused views needs registered views, but {len(unregistered)} of "
            f"{len(cache.sample_ids)} samples have views of different sizes (e.g. "
            f"{cache.sample_ids[unregistered[0]]}): set train.per_view=true (each view "
            "segmented alone) or train.model.task=classification"
        )


def train_model(
    image_cache: dict,
    samples: pd.DataFrame,
    manifest: pd.DataFrame,
    splits: pd.DataFrame,
    class_names: list[str],
    views: list[str],
    params: dict,
) -> tuple[dict, pd.DataFrame]:
    """Fit with Lightning; return the best checkpoint's model bundle and the epoch history."""
    cache = ImageCache.from_arrays(image_cache)
    expected = cache_fingerprint(samples, manifest, views, class_names, params["image_size"])
    if cache.fingerprint != expected:
        raise ValueError(
            "The image cache was built from other inputs: run the `train` pipeline "
            "from its start (the cache_images node) to rebuild it"
        )
    L.seed_everything(params["seed"], workers=True)
    label_type, targets, classes = _task(cache, params)
    if params["model"]["task"] == "segmentation" and "f1" in params["trainer"]["monitor"]:
        raise ValueError(
            "A segmentation-only model has no class scores to monitor: set "
            "train.trainer.monitor=val_loss and train.trainer.mode=min"
        )
    used_views = params["views"] or list(cache.views)
    _check_registered(cache, used_views, params)
    per_view = params["per_view"]
    loaders = _loaders(_datasets(cache, splits, params, targets, used_views, per_view), params)
    train_positions = loaders["train"].dataset.positions
    frequencies = targets[train_positions].mean(0).clip(1e-3, 1 - 1e-3).tolist()
    model_config = {
        **params["model"],
        "num_classes": len(classes),
        "views": [PER_VIEW_SLOT] if per_view else used_views,
        "label_type": label_type,
    }
    module = AnomalyModule(
        model_config,
        params["loss"],
        params["optimizer"],
        frequencies,
        params["freeze_encoder_epochs"],
        params["seed"],
        params["mixing"],
        params["channels_last"],
    )
    if params["init_from"]:
        source = torch.load(params["init_from"], map_location="cpu", weights_only=True)
        copied = load_matching_weights(module.model, source["state_dict"])
        logger.info(
            "Fine-tuning from %s: %d tensors loaded, %d new (%s)",
            params["init_from"],
            len(copied["loaded"]),
            len(copied["skipped"]),
            ", ".join(copied["skipped"][:6]),
        )
    trainer_params = params["trainer"]
    checkpoints = Path(trainer_params["checkpoint_dir"])
    resume = (
        checkpoints / "last.ckpt"
        if params["resume"] and (checkpoints / "last.ckpt").exists()
        else None
    )
    if resume is None:  # a fresh run: the checkpoints of an earlier run are not its own
        shutil.rmtree(checkpoints, ignore_errors=True)
    checkpoint = ModelCheckpoint(
        dirpath=checkpoints,
        monitor=trainer_params["monitor"],
        mode=trainer_params["mode"],
        filename="best",
        enable_version_counter=False,
    )
    # Lightning's save_last follows the monitored saves only; resume needs every epoch.
    latest = ModelCheckpoint(
        dirpath=checkpoints,
        filename="last",
        enable_version_counter=False,
        save_on_train_epoch_end=False,
    )
    trainer = L.Trainer(
        max_epochs=trainer_params["max_epochs"],
        accelerator="auto",
        devices=trainer_params["devices"],
        strategy=trainer_params["strategy"],
        precision="16-mixed" if torch.cuda.is_available() and trainer_params["amp"] else "32-true",
        gradient_clip_val=trainer_params["gradient_clip_val"],
        accumulate_grad_batches=trainer_params["accumulate_grad_batches"],
        callbacks=[
            checkpoint,
            latest,
            EarlyStopping(
                trainer_params["monitor"],
                mode=trainer_params["mode"],
                patience=trainer_params["patience"],
                check_on_train_epoch_end=False,  # after validation, also when resuming
            ),
        ],
        deterministic=True,
        enable_progress_bar=trainer_params["progress_bar"],
        logger=False,
        default_root_dir=checkpoints,
        log_every_n_steps=1,
    )
    history = _History()
    trainer.callbacks.append(history)
    trainer.fit(module, loaders["train"], loaders["val"], ckpt_path=resume)
    best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
    bundle = {
        "config": model_config,
        "state_dict": {
            name.removeprefix("model."): tensor
            for name, tensor in best["state_dict"].items()
            if name.startswith("model.")
        },
        "classes": classes,
        "label_type": label_type,
        "views": used_views,
        "per_view": per_view,
        "best_epoch": int(best["epoch"]),
        "n_parameters": sum(p.numel() for p in module.model.parameters()),
    }
    return bundle, pd.DataFrame(history.rows)


class _History(L.Callback):
    """Per-epoch metrics as rows, also logged to the active MLflow run with the epoch as step."""

    def __init__(self):
        self.rows: list[dict] = []

    def on_train_epoch_end(self, trainer, module):  # runs after the epoch's validation
        row = {"epoch": trainer.current_epoch}
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.rows.append(row | metrics)
        if mlflow.active_run() is not None and trainer.is_global_zero:
            mlflow.log_metrics(metrics, step=trainer.current_epoch)


def load_model(bundle: dict) -> torch.nn.Module:
    """The saved model, rebuilt from its config, in eval mode."""
    model = create_model(ModelConfig(**bundle["config"]))
    model.load_state_dict(bundle["state_dict"])
    return model.eval()


@torch.no_grad()
def _predict(model, loader, tta: bool):
    probs, targets, seg_probs, masks = [], [], [], []
    for batch in loader:
        output = model(batch.images, batch.view_mask)
        logits, seg = output.logits, output.seg_logits
        if tta:
            flipped = model(batch.images.flip(-1), batch.view_mask)
            logits = None if logits is None else (logits + flipped.logits) / 2
            seg = None if seg is None else (seg + flipped.seg_logits.flip(-1)) / 2
        if logits is not None:
            probs.append(probabilities(logits, model.config.label_type))
            targets.append(batch.labels)
        if seg is not None:
            seg_probs.append(torch.sigmoid(seg))
            masks.append(batch.masks)
    cat = lambda xs: torch.cat(xs) if xs else None  # noqa: E731
    return cat(probs), cat(targets), cat(seg_probs), cat(masks)


def _split_metrics(probs, targets, seg, masks, classes, label_type, params) -> dict:
    """Classification and segmentation metrics of one split, with bootstrap intervals."""
    rounds, seed = params["bootstrap_rounds"], params["seed"]
    part: dict = {}
    if probs is not None:
        part.update(classification_metrics(probs, targets, classes, label_type))
        part["macro_f1_ci95"] = bootstrap_interval(
            lambda i: classification_metrics(probs[i], targets[i], classes, label_type)["macro_f1"],
            len(probs),
            rounds=rounds,
            seed=seed,
        )
    if seg is not None:
        seg_classes = [c for c in classes if c != "normal"]
        stats = segmentation_stats(seg, masks)
        part["segmentation"] = segmentation_summary(stats, seg_classes)
        part["segmentation"]["mean_iou_ci95"] = bootstrap_interval(
            lambda i: segmentation_summary(stats[i], seg_classes)["mean_iou"],
            len(seg),
            rounds=rounds,
            seed=seed,
        )
    return part


def evaluate_model(
    model_bundle: dict, image_cache: dict, splits: pd.DataFrame, params: dict
) -> tuple[dict, pd.DataFrame]:
    """Metrics on val and test (bootstrap 95 % intervals for macro-F1 and mean IoU), and
    every val/test prediction as a table.

    A per-view model is scored per image, and per sample (``per_sample``) from the mean of
    its views' probabilities: the figure to compare with a fused multi-view model.
    """
    cache = ImageCache.from_arrays(image_cache)
    model = load_model(model_bundle)
    label_type, classes = model_bundle["label_type"], model_bundle["classes"]
    per_view = model_bundle["per_view"]
    targets = _targets(cache.labels, label_type)
    loaders = _loaders(
        _datasets(cache, splits, params, targets, model_bundle["views"], per_view), params
    )
    report = {
        "best_epoch": model_bundle["best_epoch"],
        "n_parameters": model_bundle["n_parameters"],
        "label_type": label_type,
        "classes": classes,
        "views": model_bundle["views"],
        "per_view": per_view,
    }
    tables = []
    for split in ("val", "test"):
        dataset = loaders[split].dataset
        probs, split_targets, seg, masks = _predict(model, loaders[split], params["tta"])
        report[split] = {
            "n_samples": len(dataset),
            **_split_metrics(probs, split_targets, seg, masks, classes, label_type, params),
        }
        if probs is None:
            continue
        table = _prediction_table(split, dataset, probs, split_targets, classes)
        tables.append(table)
        if per_view:
            per_sample = table.groupby("sample_id", sort=False)
            sample_probs = torch.from_numpy(per_sample[_columns("prob", classes)].mean().values)
            sample_targets = torch.from_numpy(per_sample[_columns("target", classes)].max().values)
            report[split]["per_sample"] = {
                "n_samples": len(sample_probs),
                **_split_metrics(
                    sample_probs, sample_targets, None, None, classes, label_type, params
                ),
            }
    return json_safe(report), pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _columns(kind: str, classes: list[str]) -> list[str]:
    return [f"{kind}_{c}" for c in classes]


def _prediction_table(split, dataset, probs, targets, classes) -> pd.DataFrame:
    """One row per item: split, sample, item (``sample/view`` for per-view), probabilities
    and targets per class."""
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "split": split,
                    "sample_id": dataset.cache.sample_ids[dataset.positions],
                    "item_id": [dataset.item_id(k) for k in range(len(dataset))],
                }
            ),
            pd.DataFrame(probs.numpy(), columns=_columns("prob", classes)),
            pd.DataFrame(targets.numpy().astype(np.uint8), columns=_columns("target", classes)),
        ],
        axis=1,
    )


def plot_evaluation(predictions: pd.DataFrame, metrics: dict) -> Figure:
    """Test-set confusion (matrix, or per class for multi-label) and per-class PR curves."""
    if "confusion" not in metrics["test"]:  # a segmentation-only model: no class scores
        fig = Figure(figsize=(6, 2))
        axes = fig.subplots()
        axes.axis("off")
        axes.text(0.5, 0.5, "no class predictions (segmentation-only model)", ha="center")
        return fig
    classes, label_type = metrics["classes"], metrics["label_type"]
    test = predictions[predictions["split"] == "test"]
    probs = torch.tensor(test[_columns("prob", classes)].to_numpy(np.float32))
    targets = torch.tensor(test[_columns("target", classes)].to_numpy(np.int64))
    fig = Figure(figsize=(12, 5), layout="tight")
    left, right = fig.subplots(1, 2)
    confusion = metrics["test"]["confusion"]
    if label_type == "multiclass":
        matrix, x_labels = np.array(confusion), classes
        left.set(xlabel="predicted", ylabel="true", title="test confusion")
    else:
        matrix = np.array([[confusion[c][k] for k in ("tp", "fn", "fp", "tn")] for c in classes])
        x_labels = ["TP", "FN", "FP", "TN"]
        left.set(title="test confusion per class")
    left.imshow(matrix, cmap="Blues")
    left.set_xticks(range(len(x_labels)), x_labels, rotation=45, ha="right")
    left.set_yticks(range(len(classes)), classes)
    for (row, col), value in np.ndenumerate(matrix):
        left.text(col, row, str(value), ha="center", va="center", fontsize="small")
    for k, name in enumerate(classes):
        if targets[:, k].any():
            precision, recall, _ = tmc.binary_precision_recall_curve(probs[:, k], targets[:, k])
            ap = metrics["test"]["per_class"][name]["ap"]
            right.plot(recall, precision, label=f"{name} (AP {ap:.2f})")
    right.set(
        xlabel="recall", ylabel="precision", title="test PR curves", xlim=(0, 1), ylim=(0, 1.02)
    )
    right.legend(fontsize="small")
    return fig


def plot_training_curves(history: pd.DataFrame) -> Figure:
    """Losses and validation macro-F1 per epoch."""
    fig = Figure(figsize=(10, 4), layout="tight")
    left, right = fig.subplots(1, 2)
    for column in [c for c in history.columns if c.endswith("loss") and "step" not in c]:
        left.plot(history["epoch"], history[column], label=column)
    left.set(xlabel="epoch", title="loss")
    left.legend(fontsize="small")
    if "val_macro_f1" in history:
        right.plot(history["epoch"], history["val_macro_f1"], marker="o")
    right.set(xlabel="epoch", title="validation macro-F1", ylim=(0, 1.02))
    return fig


def evaluate_baseline(image_cache: dict, splits: pd.DataFrame, params: dict) -> dict:
    """Random forest on hand-crafted per-view features, fitted on train, scored like the model
    (on the same items: samples, or single views with ``per_view``)."""
    cache = ImageCache.from_arrays(image_cache)
    label_type, targets, classes = _task(cache, params)
    views = params["views"] or list(cache.views)
    datasets = _datasets(cache, splits, params, targets, views, params["per_view"])
    features, split_targets = {}, {}
    for split, dataset in datasets.items():
        features[split] = baseline.sample_features(
            np.stack([cache.images[i][v] for i, v in dataset.items]),
            np.stack([cache.view_mask[i][v] for i, v in dataset.items]),
        )
        split_targets[split] = targets[dataset.positions]
    forest = baseline.fit_forest(
        features["train"],
        split_targets["train"],
        label_type,
        params["seed"],
        params["baseline_trees"],
    )
    report = {
        "model": "random_forest",
        "features_per_view": list(baseline.FEATURES),
        "views": views,
        "per_view": params["per_view"],
        "label_type": label_type,
        "classes": classes,
    }
    for split in ("val", "test"):
        probs = torch.from_numpy(
            baseline.forest_probabilities(forest, features[split], label_type, len(classes))
        )
        report[split] = {
            "n_samples": len(probs),
            **_split_metrics(
                probs,
                torch.from_numpy(split_targets[split]),
                None,
                None,
                classes,
                label_type,
                params,
            ),
        }
    return json_safe(report)
