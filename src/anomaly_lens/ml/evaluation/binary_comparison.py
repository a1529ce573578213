"""Binary models (one per anomaly type) against the multi-label model on the same rows:
per-type F1, AP and AUROC with grouped-bootstrap intervals, the binary models assembled
into one multi-label predictor, what each approach costs, and the plot and verdict."""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torchmetrics.functional.classification as tmc
from matplotlib.figure import Figure

from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.evaluation.metrics import bootstrap_interval, multilabel, present_macro_f1
from anomaly_lens.ml.evaluation.predictions import per_sample_table, predict, prediction_table
from anomaly_lens.ml.models.bundle import ModelBundle, load_model
from anomaly_lens.ml.serving.predictor import DecisionRule
from anomaly_lens.ml.training.binary import binary_cache
from anomaly_lens.ml.training.datasets import build_loaders, model_datasets

SCORES = ("f1", "ap", "auroc")
# Fewer positive groups (tiles, specimens) than this and a type's F1 interval only
# reflects the false positives: the comparison names no winner for it.
MIN_POSITIVE_GROUPS = 3


def rows_at_level(
    predictions: pd.DataFrame, per_view: bool, classes, level: str, split: str = "test"
) -> pd.DataFrame:
    """One split's predictions at one level: ``sample`` (a per-view model's photos
    averaged) or ``item`` (each photo of a per-view model), indexed by its id."""
    rows = predictions[predictions["split"] == split]
    if level == "item":
        return rows.set_index("item_id")
    return (per_sample_table(rows, classes) if per_view else rows).set_index("sample_id")


def class_scores(
    probs: np.ndarray, target: np.ndarray, hits: np.ndarray, units, rounds: int
) -> dict:
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


def inference_seconds(bundle: ModelBundle, cache: ImageCache, test_ids: list[str]) -> float:
    """Seconds per test sample of one pass over the test split (no augmentation)."""
    model = load_model(bundle)
    loader = build_loaders(model_datasets(cache, {"test": test_ids}, bundle), 32, 0, False, 0, "")
    started = time.perf_counter()
    predict(model, loader["test"], tta="none")
    return (time.perf_counter() - started) / max(len(test_ids), 1)


def validation_rows(
    bundle: ModelBundle, cache: ImageCache, val_ids: list[str], tta: str
) -> pd.DataFrame:
    """A binary model's predictions on the whole validation split, samples carrying only
    other types included (``exclude`` left them out of its own validation): the rows that
    compare both ``binary.other_anomalies`` modes with the multi-label model on equal terms."""
    own = binary_cache(cache, bundle.classes[0])
    dataset = model_datasets(own, {"val": val_ids}, bundle)["val"]
    loader = build_loaders({"val": dataset}, 32, 0, False, 0, "")["val"]
    found = predict(load_model(bundle), loader, tta)
    return prediction_table("val", dataset, found.probs, found.targets, bundle.classes)


def compare_level(
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
        per_class[name] = _type_entry(
            binary_probs, main[f"prob_{name}"].to_numpy(), main_hits, target, groups, rounds
        )
    return {"per_class": per_class, "assembled": _assembled(assembled, main, groups, rounds)}


def _type_entry(binary_probs, main_probs, main_hits, target, groups, rounds: int) -> dict:
    """One type: both approaches' scores, their F1 difference and the winner (a tie within
    the multi-label interval; none with too few positive groups)."""
    positive_groups = len(np.unique(np.asarray(groups)[target == 1]))
    entry = {
        "n_positive": int(target.sum()),
        "n_positive_groups": positive_groups,
        "binary": class_scores(binary_probs, target, binary_probs >= 0.5, groups, rounds),
        "multilabel": class_scores(main_probs, target, main_hits, groups, rounds),
    }
    entry["f1_difference"] = entry["binary"]["f1"] - entry["multilabel"]["f1"]
    low, high = entry["multilabel"]["f1_ci95"]
    if positive_groups < MIN_POSITIVE_GROUPS:
        groups_named = f"{positive_groups} group" + ("" if positive_groups == 1 else "s")
        entry["winner_f1"] = f"too few positives to tell ({groups_named})"
    elif low <= entry["binary"]["f1"] <= high:
        entry["winner_f1"] = "tie (within the multi-label interval)"
    else:
        entry["winner_f1"] = "binary" if entry["f1_difference"] > 0 else "multilabel"
    return entry


def _assembled(assembled: dict, main: pd.DataFrame, groups, rounds: int) -> dict:
    """Both approaches' decisions per type as one multi-label predictor: macro-F1 with a
    grouped-bootstrap interval."""
    names = list(assembled["binary"])
    targets = torch.from_numpy(main[[f"target_{n}" for n in names]].to_numpy()).long()
    macro = {}
    for approach, hits in assembled.items():
        stacked = np.column_stack([hits[n] for n in names]).astype(np.float32)

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
    return macro


def table_rows(per_class: dict, level: str) -> list[dict]:
    """One row per type and approach: the scores and their interval bounds."""
    return [
        {"level": level, "class": name, "model": approach}
        | {k: v for k, v in entry[approach].items() if not k.endswith("ci95")}
        | {f"{k}_low": entry[approach][f"{k}_ci95"][0] for k in SCORES}
        | {f"{k}_high": entry[approach][f"{k}_ci95"][1] for k in SCORES}
        for name, entry in per_class.items()
        for approach in ("binary", "multilabel")
    ]


def compare_part(predictions, model, pairs, level: str, split: str, units, rounds: int):
    """The number of rows and the comparison of one split at one level; ``pairs``: each
    binary model's prediction table and bundle."""
    main = rows_at_level(predictions, model.per_view, model.classes, level, split)
    binaries = {
        bundle.classes[0]: rows_at_level(rows, bundle.per_view, bundle.classes, level, split)
        for rows, bundle in pairs
    }
    samples = main["sample_id"] if level == "item" else main.index
    groups = units.loc[samples].to_numpy()
    return len(main), compare_level(main, binaries, model.label_type, groups, rounds)


def verdict(part: dict, level: str) -> str:
    """One sentence: assembled macro-F1 of both approaches and the winner per type."""
    macro = part["assembled"]
    wins = {n: e["winner_f1"] for n, e in part["per_class"].items()}
    return (
        f"Assembled binary models, {level}: macro-F1 {macro['binary']['macro_f1']:.3f} "
        f"vs multi-label {macro['multilabel']['macro_f1']:.3f}; per type (F1): {wins}."
    )


def comparison_plot(levels: dict[str, dict]) -> Figure:
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


def costs(model: ModelBundle, pairs: list, cache: ImageCache, test_ids: list[str]) -> dict:
    """Parameters, training seconds and inference seconds per test sample of the binary
    models together and of the multi-label model."""
    return {
        "binary": {
            "parameters": sum(bundle.n_parameters for _, bundle in pairs),
            "training_seconds": sum(bundle.training_seconds or 0.0 for _, bundle in pairs),
            "inference_seconds_per_sample": sum(
                inference_seconds(bundle, cache, test_ids) for _, bundle in pairs
            ),
        },
        "multilabel": {
            "parameters": model.n_parameters,
            "training_seconds": model.training_seconds,
            "inference_seconds_per_sample": inference_seconds(model, cache, test_ids),
        },
    }
