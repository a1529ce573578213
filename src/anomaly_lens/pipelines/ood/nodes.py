"""Nodes of the ``ood`` pipeline. Detectors are fitted on train items, thresholds set on
val items; test items are the in-distribution side of every evaluation."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.evaluation.metrics import json_safe
from anomaly_lens.ml.evaluation.ood import (
    CORRUPTIONS,
    DETECTORS,
    OODScorer,
    corrupt,
    logits_and_features,
    separation,
    textures,
)
from anomaly_lens.ml.models.bundle import load_model
from anomaly_lens.ml.serving.identity import model_identity
from anomaly_lens.ml.training.datasets import build_loaders, model_datasets
from anomaly_lens.parameters import parse_block
from anomaly_lens.tracking import as_mlflow_metrics

logger = logging.getLogger(__name__)

IN_DISTRIBUTION = "test"


def _items(
    model: dict,
    image_cache: dict,
    splits: pd.DataFrame,
    parts: list[str],
    seed: int,
    limit: int | None = None,
):
    """Per part: the items' images ``(N, V, 1, H, W)`` in [0, 1], view masks and targets;
    all of them, or at most ``limit`` (a seeded draw)."""
    cache = ImageCache.from_arrays(image_cache)
    ids = {p: splits.loc[splits["split"] == p, "sample_id"].tolist() for p in parts}
    datasets = model_datasets(cache, {p: i for p, i in ids.items() if i}, model)
    out = {}
    rng = np.random.default_rng(seed)
    for part, loader in build_loaders(datasets, 64, 0, False, seed, training_part="").items():
        batches = list(loader)
        images = torch.cat([b.images for b in batches])
        view_mask = torch.cat([b.view_mask for b in batches])
        labels = torch.cat([b.labels for b in batches])
        keep = np.sort(rng.permutation(len(images))[:limit])  # [:None]: all
        out[part] = (images[keep], view_mask[keep], labels[keep])
    return out


def _batches(images: torch.Tensor, view_mask: torch.Tensor, size: int = 64) -> list[Batch]:
    return [
        Batch(images[i : i + size], view_mask[i : i + size]) for i in range(0, len(images), size)
    ]


def _groups(labels: torch.Tensor, label_type: str) -> np.ndarray:
    """A class per item for class-conditional detectors: multi-class, the class; multi-label,
    0 without labels, else 1 + its first label."""
    if label_type == "multiclass":
        return labels.argmax(1).numpy()
    return np.where(labels.sum(1) > 0, labels.argmax(1) + 1, 0)


def fit_ood_detectors(
    model: dict, image_cache: dict, splits: pd.DataFrame, params: dict
) -> dict[str, OODScorer]:
    """Every detector fitted on the train items (all of them) with its threshold at
    ``ood.kept`` of the val items; test items are not read."""
    settings = parse_block("ood", params)
    parts = _items(model, image_cache, splits, ["train", "val"], settings.seed)
    network = load_model(model)
    train_logits, train_features = logits_and_features(network, _batches(*parts["train"][:2]))
    val_logits, val_features = logits_and_features(network, _batches(*parts["val"][:2]))
    groups = _groups(parts["train"][2], model["label_type"])
    detectors = {}
    for name in DETECTORS:
        scorer = OODScorer(
            name, model["label_type"], settings.seed, settings.neighbours, model_identity(model)
        )
        scorer.fit(train_logits, train_features, groups)
        scorer.set_threshold(scorer.score(val_logits, val_features), settings.kept)
        detectors[name] = scorer
    logger.info(
        "OOD detectors fitted on %d train items, thresholds on %d val items",
        len(train_features),
        len(val_features),
    )
    return detectors


def score_ood_sets(
    detectors: dict[str, OODScorer],
    model: dict,
    image_cache: dict,
    splits: pd.DataFrame,
    params: dict,
) -> pd.DataFrame:
    """``ood_scores``: one row per item, set and detector. Sets: the test items
    (in-distribution), each corruption of them at severities 1-5, the ``shift`` split where
    there is one, and procedural textures (far-OOD)."""
    settings = parse_block("ood", params)
    parts = _items(
        model, image_cache, splits, [IN_DISTRIBUTION, "shift"], settings.seed, settings.max_items
    )
    images, view_mask, _ = parts[IN_DISTRIBUTION]
    pixels = (images * 255).round().to(torch.uint8).numpy()
    sets = [(IN_DISTRIBUTION, "none", 0, images, view_mask)]
    for k, name in enumerate(CORRUPTIONS):
        for severity in range(1, 6):
            corrupted = corrupt(pixels, name, severity, settings.seed + 10 * k + severity)
            sets.append(
                ("corruption", name, severity, torch.from_numpy(corrupted).float() / 255, view_mask)
            )
    if "shift" in parts:
        sets.append(("shift", "none", 0, parts["shift"][0], parts["shift"][1]))
    n, views, _, size, _ = images.shape
    far = textures(n * views, size, settings.seed).reshape(n, views, 1, size, size)
    sets.append(
        (
            "far_ood",
            "textures",
            0,
            torch.from_numpy(far).float() / 255,
            torch.ones(n, views, dtype=torch.bool),
        )
    )
    network = load_model(model)
    rows = []
    for kind, corruption, severity, set_images, set_mask in sets:
        logits, features = logits_and_features(network, _batches(set_images, set_mask))
        for name, scorer in detectors.items():
            rows.append(
                pd.DataFrame(
                    {
                        "set": kind,
                        "corruption": corruption,
                        "severity": severity,
                        "detector": name,
                        "score": scorer.score(logits, features),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def summarise_ood(
    scores: pd.DataFrame, detectors: dict[str, OODScorer], params: dict
) -> tuple[OODScorer, dict, pd.DataFrame, dict]:
    """``ood_detector`` (``ood.detector``, chosen by parameter, never by these test
    figures), ``ood_metrics`` (AUROC, FPR95, AUPR per detector, set and severity; a
    ``summary`` of the chosen detector; ``test_selected_best``, named as the selected score
    it is), the same as a table, and the chosen detector's AUROCs for the MLflow run."""
    settings = parse_block("ood", params)
    inside = scores[scores["set"] == IN_DISTRIBUTION]
    rows = []
    outside = scores[scores["set"] != IN_DISTRIBUTION]
    for (kind, corruption, severity, name), part in outside.groupby(
        ["set", "corruption", "severity", "detector"], sort=False
    ):
        reference = inside.loc[inside["detector"] == name, "score"].to_numpy()
        found = separation(reference, part["score"].to_numpy())
        flagged = float((part["score"] > detectors[name].threshold).mean())
        rows.append(
            {
                "set": kind,
                "corruption": corruption,
                "severity": int(severity),
                "detector": name,
                **found,
                "flagged_share": flagged,
            }
        )
    table = pd.DataFrame(rows)
    hard = table[(table["set"] == "corruption") & (table["severity"] >= 3)]
    corruption_auroc = hard.groupby("detector")["auroc"].mean()
    far_auroc = table[table["set"] == "far_ood"].set_index("detector")["auroc"]
    summary = {
        "chosen_detector": settings.detector,
        "chosen_auroc_corruption_severity_3plus": float(corruption_auroc[settings.detector]),
        "chosen_auroc_far_ood": float(far_auroc[settings.detector]),
    }
    # The best detector on these very figures: a selected score, reported as such and
    # never as the headline (the per-detector table below has every detector's figures).
    test_selected = {
        "note": "the highest AUROC of all detectors on these test sets: selected on test",
        "corruption_severity_3plus": {
            "detector": str(corruption_auroc.idxmax()), "auroc": float(corruption_auroc.max())
        },
        "far_ood": {"detector": str(far_auroc.idxmax()), "auroc": float(far_auroc.max())},
    }  # fmt: skip
    by_detector = {
        name: {
            "threshold": detectors[name].threshold,
            "val_kept": settings.kept,
            "test_flagged_share": float(
                (inside.loc[inside["detector"] == name, "score"] > detectors[name].threshold).mean()
            ),
            "sets": table[table["detector"] == name].drop(columns="detector").to_dict("records"),
        }
        for name in detectors
    }
    report = json_safe(
        {
            "in_distribution": {"set": IN_DISTRIBUTION, "n": int(len(inside) / len(detectors))},
            "summary": summary,
            "test_selected_best": test_selected,
            "detectors": by_detector,
        }
    )
    headline = as_mlflow_metrics({k: v for k, v in summary.items() if isinstance(v, float)})
    logger.info("OOD: %s", summary)
    return detectors[settings.detector], report, table, headline


def plot_ood_scores(scores: pd.DataFrame) -> Figure:
    """Score histograms per detector: test against severity-3 corruptions, shift, far-OOD."""
    names = list(dict.fromkeys(scores["detector"]))
    fig = Figure(figsize=(4 * len(names), 3.5), layout="tight")
    for axes, name in zip(fig.subplots(1, len(names)), names, strict=True):
        part = scores[scores["detector"] == name]
        groups = {
            "test (in)": part[part["set"] == IN_DISTRIBUTION],
            "corrupted, severity 3": part[(part["set"] == "corruption") & (part["severity"] == 3)],
            "shift": part[part["set"] == "shift"],
            "far-OOD textures": part[part["set"] == "far_ood"],
        }
        bins = np.histogram_bin_edges(part["score"], bins=30)
        for label, rows in groups.items():
            if len(rows):
                axes.hist(rows["score"], bins=bins, alpha=0.5, density=True, label=label)
        axes.set(title=name, xlabel="outlier score")
        axes.legend(fontsize="x-small")
    return fig
