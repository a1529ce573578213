"""Nodes of the ``train_binary`` pipeline: each anomaly type's binary task and model (one
namespace per type), and their comparison with the multi-label model of ``train``."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import torch
import torchmetrics.functional.classification as tmc
from matplotlib.figure import Figure

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.data.splitting import ids_by_split, units_of
from anomaly_lens.ml.evaluation.metrics import (
    bootstrap_interval,
    json_safe,
    multilabel,
    present_macro_f1,
)
from anomaly_lens.ml.evaluation.predictions import per_sample_table, predict, prediction_table
from anomaly_lens.ml.models.bundle import load_model
from anomaly_lens.ml.serving.predictor import DecisionRule
from anomaly_lens.ml.training.binary import binary_cache, binary_splits
from anomaly_lens.ml.training.core import train_on_cache
from anomaly_lens.ml.training.datasets import build_loaders, model_datasets
from anomaly_lens.ml.training.runs import nested_run
from anomaly_lens.parameters import binary_train_settings, parse_block
from anomaly_lens.pipelines.train.nodes import plot_training_curves
from anomaly_lens.tracking import as_mlflow_metrics

logger = logging.getLogger(__name__)

SCORES = ("f1", "ap", "auroc")
# Fewer positive groups (tiles, specimens) than this and a type's F1 interval only
# reflects the false positives: the comparison names no winner for it.
MIN_POSITIVE_GROUPS = 3


def select_binary_task(
    image_cache: dict, splits: pd.DataFrame, anomaly_type: str, params: dict
) -> tuple[dict, pd.DataFrame]:
    """The type's one-class image cache and split table (``binary.other_anomalies``)."""
    settings = parse_block("binary", params)
    cache = ImageCache.from_arrays(image_cache)
    task_splits = binary_splits(splits, cache, anomaly_type, settings.other_anomalies)
    counts = task_splits["split"].value_counts().to_dict()
    logger.info(
        "binary.%s: %s samples per split (%s)", anomaly_type, counts, settings.other_anomalies
    )
    return binary_cache(cache, anomaly_type).arrays(), task_splits


def _flat(values: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def train_binary_model(
    image_cache: dict, splits: pd.DataFrame, anomaly_type: str, train: dict, binary: dict
) -> tuple[dict, pd.DataFrame]:
    """The type's model, trained with ``train`` merged with ``binary.common`` and
    ``binary.per_type.<type>`` (one sigmoid output), in a nested MLflow run of its own with
    its parameters, per-epoch metrics, curves and weights."""
    settings = binary_train_settings(train, parse_block("binary", binary), anomaly_type)
    folder = str(Path(settings.trainer.checkpoint_dir) / "binary" / anomaly_type)
    settings = settings.model_copy(
        update={"trainer": settings.trainer.model_copy(update={"checkpoint_dir": folder})}
    )
    cache = ImageCache.from_arrays(image_cache)
    params = _flat(settings.model_dump())
    with nested_run(f"binary · {anomaly_type}", params, anomaly_type=anomaly_type) as run:
        result = train_on_cache(cache, ids_by_split(splits, ["train", "val"]), settings)
        if run is not None:
            mlflow.log_figure(plot_training_curves(result.history), "training_curves.png")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "model.pt"
                torch.save(result.bundle, path)
                mlflow.log_artifact(str(path), "model")
    plt.close("all")
    return result.bundle, result.history


def _rows(
    predictions: pd.DataFrame, per_view: bool, classes, level: str, split: str = "test"
) -> pd.DataFrame:
    """One split's predictions at one level: ``sample`` (a per-view model's photos
    averaged) or ``item`` (each photo of a per-view model), indexed by its id."""
    rows = predictions[predictions["split"] == split]
    if level == "item":
        return rows.set_index("item_id")
    return (per_sample_table(rows, classes) if per_view else rows).set_index("sample_id")


def _scores(probs: np.ndarray, target: np.ndarray, hits: np.ndarray, units, rounds: int) -> dict:
    """F1, AP and AUROC of one class with grouped-bootstrap 95 % intervals; a round without
    a positive leaves F1 undefined and is left out of its interval (the rule of
    ``metrics.present_macro_f1``)."""
    p, t, h = torch.from_numpy(probs), torch.from_numpy(target).long(), torch.from_numpy(hits)

    def value(name: str, i, resampled: bool = False) -> float:
        if name == "f1":
            f1 = tmc.binary_f1_score(h[i].float(), t[i]).reshape(1)
            return present_macro_f1(f1, t[i, None]) if resampled else float(f1)
        if t[i].min() == t[i].max():
            return float("nan")  # AP/AUROC need both outcomes
        metric = tmc.binary_average_precision if name == "ap" else tmc.binary_auroc
        return float(metric(p[i], t[i]))

    everything = np.arange(len(p))
    out = {}
    for name in SCORES:
        out[name] = value(name, everything)
        out[f"{name}_ci95"] = list(
            bootstrap_interval(
                lambda i, n=name: value(n, i, resampled=True),
                len(p),
                rounds=rounds,
                seed=0,
                groups=units,
            )
        )
    return out


def _inference_seconds(bundle: dict, cache: ImageCache, test_ids: list[str]) -> float:
    """Seconds per test sample of one pass over the test split (no augmentation)."""
    model = load_model(bundle)
    loader = build_loaders(model_datasets(cache, {"test": test_ids}, bundle), 32, 0, False, 0, "")
    started = time.perf_counter()
    predict(model, loader["test"], tta="none")
    return (time.perf_counter() - started) / max(len(test_ids), 1)


def _validation_rows(bundle: dict, cache: ImageCache, val_ids: list[str], tta: str) -> pd.DataFrame:
    """A binary model's predictions on the whole validation split, samples carrying only
    other types included (``exclude`` left them out of its own validation): the rows that
    compare both ``binary.other_anomalies`` modes with the multi-label model on equal terms."""
    own = binary_cache(cache, bundle["classes"][0])
    dataset = model_datasets(own, {"val": val_ids}, bundle)["val"]
    loader = build_loaders({"val": dataset}, 32, 0, False, 0, "")["val"]
    found = predict(load_model(bundle), loader, tta)
    return prediction_table("val", dataset, found.probs, found.targets, bundle["classes"])


def _compare_level(
    main: pd.DataFrame, binaries: dict[str, pd.DataFrame], label_type: str, groups, rounds: int
) -> dict:
    """Per type, the binary model's rows against the multi-label model's on the same test
    rows (F1, AP, AUROC with intervals over ``groups``), and both assembled (macro-F1)."""
    per_class, assembled = {}, {"binary": {}, "multilabel": {}}
    main_probs = main[[c for c in main if c.startswith("prob_")]]
    decided, _, _ = DecisionRule().apply(main_probs.to_numpy(), label_type)
    main_decisions = pd.DataFrame(decided.astype(bool), columns=list(main_probs))
    for name, binary in binaries.items():
        rows = binary.reindex(main.index)
        target = rows[f"target_{name}"].to_numpy()
        if not np.array_equal(target, main[f"target_{name}"].to_numpy()):
            raise ValueError(f"binary.{name} was scored on other test samples than `model`")
        main_hits = main_decisions[f"prob_{name}"].to_numpy()
        binary_probs = rows[f"prob_{name}"].to_numpy()
        assembled["binary"][name] = binary_probs >= 0.5
        assembled["multilabel"][name] = main_hits
        positive_groups = len(np.unique(np.asarray(groups)[target == 1]))
        entry = {
            "n_positive": int(target.sum()),
            "n_positive_groups": positive_groups,
            "binary": _scores(binary_probs, target, binary_probs >= 0.5, groups, rounds),
            "multilabel": _scores(
                main[f"prob_{name}"].to_numpy(), target, main_hits, groups, rounds
            ),
        }
        entry["f1_difference"] = entry["binary"]["f1"] - entry["multilabel"]["f1"]
        low, high = entry["multilabel"]["f1_ci95"]
        inside = low <= entry["binary"]["f1"] <= high
        if positive_groups < MIN_POSITIVE_GROUPS:
            groups_named = f"{positive_groups} group" + ("" if positive_groups == 1 else "s")
            entry["winner_f1"] = f"too few positives to tell ({groups_named})"
        elif inside:
            entry["winner_f1"] = "tie (within the multi-label interval)"
        else:
            entry["winner_f1"] = "binary" if entry["f1_difference"] > 0 else "multilabel"
        per_class[name] = entry
    targets = torch.from_numpy(main[[f"target_{n}" for n in per_class]].to_numpy()).long()
    macro = {}
    for approach, hits in assembled.items():
        stacked = np.column_stack([hits[n] for n in per_class]).astype(np.float32)

        def per_class_f1(i, s=stacked):
            return multilabel("f1_score", torch.from_numpy(s[i]), targets[i])

        def resampled_macro_f1(i, f1=per_class_f1):
            return present_macro_f1(f1(i), targets[i])

        macro[approach] = {
            "macro_f1": float(per_class_f1(np.arange(len(stacked))).mean()),
            "macro_f1_ci95": list(
                bootstrap_interval(resampled_macro_f1, len(stacked), rounds, 0, groups=groups)
            ),
        }
    return {"per_class": per_class, "assembled": macro}


def _table_rows(per_class: dict, level: str) -> list[dict]:
    """One row per type and approach: the scores and their interval bounds."""
    return [
        {"level": level, "class": name, "model": approach}
        | {k: v for k, v in entry[approach].items() if not k.endswith("ci95")}
        | {f"{k}_low": entry[approach][f"{k}_ci95"][0] for k in SCORES}
        | {f"{k}_high": entry[approach][f"{k}_ci95"][1] for k in SCORES}
        for name, entry in per_class.items()
        for approach in ("binary", "multilabel")
    ]


def _part(predictions, model, pairs, level: str, split: str, units, rounds: int):
    """The number of rows and the comparison of one split at one level; ``pairs``: each
    binary model's prediction table and bundle."""
    main = _rows(predictions, model["per_view"], model["classes"], level, split)
    binaries = {
        bundle["classes"][0]: _rows(rows, bundle["per_view"], bundle["classes"], level, split)
        for rows, bundle in pairs
    }
    samples = main["sample_id"] if level == "item" else main.index
    groups = units.loc[samples].to_numpy()
    return len(main), _compare_level(main, binaries, model["label_type"], groups, rounds)


def compare_binary(
    predictions: pd.DataFrame,
    model: dict,
    image_cache: dict,
    splits: pd.DataFrame,
    params: dict,
    binary: dict,
    *binary_parts,
) -> tuple[dict, pd.DataFrame, Figure]:
    """``binary_comparison``: per type, the binary model against the multi-label model on
    the same test samples (F1, AP, AUROC with intervals), the binary models assembled into
    one multi-label predictor, and what each approach costs (parameters, training and
    inference time). Per-view models are also compared photo by photo (``per_item``), the
    intervals still resampling whole groups; ``validation`` compares them on the whole
    validation split, the figures to choose ``binary.other_anomalies`` by.
    ``binary_parts``: each type's predictions and model, in turn."""
    settings = parse_block("train", params)
    cache = ImageCache.from_arrays(image_cache)
    test_ids, val_ids = (ids_by_split(splits, [s])[s] for s in ("test", "val"))
    units, rounds = units_of(splits), settings.bootstrap_rounds
    pairs = list(zip(binary_parts[0::2], binary_parts[1::2], strict=True))
    report = {"other_anomalies": parse_block("binary", binary).other_anomalies}
    n, part = _part(predictions, model, pairs, "sample", "test", units, rounds)
    report, parts = report | {"test_samples": n, **part}, {"test samples": part}
    if model["per_view"] and all(bundle["per_view"] for _, bundle in pairs):
        n, part = _part(predictions, model, pairs, "item", "test", units, rounds)
        report["per_item"], parts["test photos (per view)"] = {"test_items": n, **part}, part
    whole_val = [(_validation_rows(b, cache, val_ids, settings.tta), b) for _, b in pairs]
    n, part = _part(predictions, model, whole_val, "sample", "val", units, rounds)
    report["validation"], parts["validation samples"] = {"val_samples": n, **part}, part
    binary_cost = {
        "parameters": sum(bundle["n_parameters"] for _, bundle in pairs),
        "training_seconds": sum(bundle.get("training_seconds") or 0.0 for _, bundle in pairs),
        "inference_seconds_per_sample": sum(
            _inference_seconds(bundle, cache, test_ids) for _, bundle in pairs
        ),
    }
    report["cost"] = {
        "binary": binary_cost,
        "multilabel": {
            "parameters": model["n_parameters"],
            "training_seconds": model.get("training_seconds"),
            "inference_seconds_per_sample": _inference_seconds(model, cache, test_ids),
        },
    }
    report["verdict"] = " ".join(_verdict(part, level) for level, part in parts.items()) + (
        f" {len(pairs)} binary models have "
        f"{binary_cost['parameters'] / model['n_parameters']:.1f}x the parameters of the "
        "multi-label model."
    )
    logger.info(report["verdict"])
    table = [row for level, part in parts.items() for row in _table_rows(part["per_class"], level)]
    plotted = {level: part["per_class"] for level, part in parts.items()}
    return json_safe(report), pd.DataFrame(table), _comparison_plot(plotted)


def _verdict(part: dict, level: str) -> str:
    """One sentence: assembled macro-F1 of both approaches and the winner per type."""
    macro = part["assembled"]
    wins = {n: e["winner_f1"] for n, e in part["per_class"].items()}
    return (
        f"Assembled binary models, {level}: macro-F1 {macro['binary']['macro_f1']:.3f} "
        f"vs multi-label {macro['multilabel']['macro_f1']:.3f}; per type (F1): {wins}."
    )


def binary_headline_metrics(comparison: dict) -> dict:
    """The comparison's figures as MLflow metrics of the run: ``binary.<type>.f1`` beside
    ``binary.<type>.multilabel_f1`` and their difference, and the assembled macro-F1 on
    test and (``binary.val_*``) on validation."""
    figures = {}
    for name, entry in comparison["per_class"].items():
        figures[f"binary.{name}.f1"] = entry["binary"]["f1"]
        figures[f"binary.{name}.multilabel_f1"] = entry["multilabel"]["f1"]
        figures[f"binary.{name}.f1_difference"] = entry["f1_difference"]
    assembled = comparison["assembled"]
    figures["binary.assembled_macro_f1"] = assembled["binary"]["macro_f1"]
    figures["binary.multilabel_macro_f1"] = assembled["multilabel"]["macro_f1"]
    figures["binary.macro_f1_difference"] = (
        assembled["binary"]["macro_f1"] - assembled["multilabel"]["macro_f1"]
    )
    validation = comparison["validation"]["assembled"]
    figures["binary.val_assembled_macro_f1"] = validation["binary"]["macro_f1"]
    figures["binary.val_multilabel_macro_f1"] = validation["multilabel"]["macro_f1"]
    if "per_item" in comparison:  # per-view models, photo by photo
        per_item = comparison["per_item"]["assembled"]
        figures["binary.assembled_item_macro_f1"] = per_item["binary"]["macro_f1"]
        figures["binary.multilabel_item_macro_f1"] = per_item["multilabel"]["macro_f1"]
    return as_mlflow_metrics(figures)


def _comparison_plot(levels: dict[str, dict]) -> Figure:
    """F1, AP and AUROC per type, binary beside multi-label, with their intervals; one row
    of panels per level (samples, and photos for per-view models)."""
    fig, axes = plt.subplots(
        len(levels), len(SCORES), figsize=(4 * len(SCORES), 3.4 * len(levels)), squeeze=False
    )
    for row, (level, per_class) in zip(axes, levels.items(), strict=True):
        names = list(per_class)
        x = np.arange(len(names))
        for ax, score in zip(row, SCORES, strict=True):
            for offset, approach in ((-0.2, "multilabel"), (0.2, "binary")):
                values = [per_class[n][approach][score] for n in names]
                low = [per_class[n][approach][f"{score}_ci95"][0] for n in names]
                high = [per_class[n][approach][f"{score}_ci95"][1] for n in names]
                values = np.array([np.nan if v is None else v for v in values], dtype=float)
                errors = np.abs(
                    np.array([values - np.array(low, float), np.array(high, float) - values])
                )
                ax.bar(x + offset, values, 0.4, yerr=errors, capsize=3, label=approach)
            ax.set_xticks(x, names, rotation=30)
            ax.set(title=f"{level}: {score}", ylim=(0, 1.05))
    axes[0, 0].legend(fontsize="small")
    fig.tight_layout()
    return fig
