"""Baselines: a random forest on hand-crafted features per view; a logistic regression on
frozen pretrained features."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import timm
import torch
from scipy import stats
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from anomaly_lens.ml.content_memo import memoised_by_content
from anomaly_lens.ml.data.cache import MultiViewDataset
from anomaly_lens.ml.evaluation.predictions import Scoring
from anomaly_lens.ml.models.pretrained import grey_normalisation, package_state_dict, weight_package

FEATURES = (
    "mean",
    "std",
    "min",
    "p01",
    "p50",
    "p99",
    "max",
    "skew",
    "kurtosis",
    "laplacian_var",
    "gradient_mean",
    "gradient_p99",
    "bright_share",
    "dark_share",
)


def image_features(image: np.ndarray) -> np.ndarray:
    """Intensity statistics, sharpness and edge strength, and the share of outlier pixels."""
    x = image.astype(np.float32)
    flat = x.ravel()
    gx, gy = cv2.Sobel(x, cv2.CV_32F, 1, 0), cv2.Sobel(x, cv2.CV_32F, 0, 1)
    gradient = np.sqrt(gx**2 + gy**2)
    mean, std = flat.mean(), flat.std() + 1e-6
    return np.array(
        [
            mean,
            std,
            flat.min(),
            *np.percentile(flat, [1, 50, 99]),
            flat.max(),
            stats.skew(flat),
            stats.kurtosis(flat),
            cv2.Laplacian(x, cv2.CV_32F).var(),
            gradient.mean(),
            np.percentile(gradient, 99),
            (flat > mean + 3 * std).mean(),
            (flat < mean - 3 * std).mean(),
        ],
        dtype=np.float32,
    )


@memoised_by_content(size=8)
def sample_features(images: np.ndarray, view_mask: np.ndarray) -> np.ndarray:
    """(N, V * (F + 1)): each view's features (-1 where missing) and its presence flag."""
    n, v = view_mask.shape
    out = np.full((n, v, len(FEATURES) + 1), -1.0, dtype=np.float32)
    for i in range(n):
        for j in range(v):
            if view_mask[i, j]:
                out[i, j, :-1] = image_features(images[i, j])
                out[i, j, -1] = 1.0
    return out.reshape(n, -1)


def fit_forest(
    features: np.ndarray, targets: np.ndarray, label_type: str, seed: int, trees: int = 300
) -> RandomForestClassifier:
    """A class-balanced forest: one output per class (multi-label) or one multi-class output."""
    forest = RandomForestClassifier(
        n_estimators=trees,
        class_weight="balanced_subsample",
        random_state=seed,
        n_jobs=-1,
        min_samples_leaf=2,
    )
    if label_type == "multiclass":
        targets = targets.argmax(1)
    elif targets.shape[1] == 1:  # one type (a binary model): one output, not a column
        targets = targets[:, 0]
    forest.fit(features, targets)
    return forest


def forest_probabilities(
    forest: RandomForestClassifier, features: np.ndarray, label_type: str, n_classes: int
) -> np.ndarray:
    """(N, K) probabilities in the class order of the targets."""
    if label_type == "multiclass":
        probs = np.zeros((len(features), n_classes), dtype=np.float32)
        probs[:, forest.classes_] = forest.predict_proba(features)
        return probs
    outputs, known_classes = forest.predict_proba(features), forest.classes_
    if forest.n_outputs_ == 1:
        outputs, known_classes = [outputs], [known_classes]
    columns = []
    for proba, known in zip(outputs, known_classes, strict=True):
        positive = list(known).index(1) if 1 in known else None
        columns.append(proba[:, positive] if positive is not None else np.zeros(len(features)))
    return np.column_stack(columns).astype(np.float32)


@memoised_by_content(size=8)
@torch.no_grad()
def pretrained_features(
    images: np.ndarray, backbone: str = "tf_efficientnet_lite0", batch_size: int = 32
) -> np.ndarray:
    """(N, C) frozen ImageNet features (global average of the last map) of (N, H, W) grey
    images, from weights shipped by an installed package (``ml.models.pretrained``)."""
    package = weight_package(backbone)
    model = timm.create_model(
        backbone,
        in_chans=1,
        num_classes=0,
        pretrained=True,
        pretrained_cfg_overlay={"state_dict": package_state_dict(backbone)},
    ).eval()
    (mean,), (std,) = grey_normalisation(package, 1)
    rows = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size]).float().div(255).unsqueeze(1)
        rows.append(model((batch - mean) / std).numpy())
    return np.concatenate(rows).astype(np.float32)


def fit_logistic(
    features: np.ndarray, targets: np.ndarray, label_type: str, seed: int, c: float = 1.0
):
    """Standardised, class-balanced logistic regression (one-vs-rest for multi-label) of
    inverse regularisation strength ``c``."""
    classifier = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=seed)
    if label_type == "multiclass":
        labels = targets.argmax(1)
    elif targets.shape[1] == 1:  # one type (a binary model): a plain binary regression
        labels = targets[:, 0]
    else:
        classifier, labels = OneVsRestClassifier(classifier), targets
    return make_pipeline(StandardScaler(), classifier).fit(features, labels)


def logistic_probabilities(model, features: np.ndarray, label_type: str, n_classes: int):
    """(N, K) probabilities in the class order of the targets."""
    probs = np.zeros((len(features), n_classes), dtype=np.float32)
    if label_type == "multilabel" and n_classes == 1:  # binary: the positive class's column
        known = list(model.classes_)
        probs[:, 0] = model.predict_proba(features)[:, known.index(1)] if 1 in known else 0
        return probs
    classes = model.classes_ if label_type == "multiclass" else np.arange(n_classes)
    probs[:, classes] = model.predict_proba(features)
    return probs


def item_features(dataset: MultiViewDataset, backbone: str) -> np.ndarray:
    """Frozen features of every item: its views' features side by side, zeros where a
    view is missing (one view per item with ``per_view``)."""
    cache = dataset.cache
    pairs = sorted({(i, j) for i, views in dataset.items for j in views if cache.view_mask[i, j]})
    features = pretrained_features(np.stack([cache.images[i][j] for i, j in pairs]), backbone)
    row_of = {pair: row for row, pair in enumerate(pairs)}
    width = max(len(views) for _, views in dataset.items)
    out = np.zeros((len(dataset), width, features.shape[1]), dtype=np.float32)
    for k, (i, views) in enumerate(dataset.items):
        for slot, j in enumerate(views):
            if (i, j) in row_of:
                out[k, slot] = features[row_of[i, j]]
    return out.reshape(len(dataset), -1)


def _hand_crafted(dataset: MultiViewDataset) -> np.ndarray:
    return sample_features(
        np.stack([dataset.cache.images[i][v] for i, v in dataset.items]),
        np.stack([dataset.cache.view_mask[i][v] for i, v in dataset.items]),
    )


def _scored(name: str, probs: Mapping[str, np.ndarray], datasets, label_type, classes, scoring):
    """A baseline's report: its val and test probabilities scored like the network's."""
    report = {"model": name, "label_type": label_type, "classes": classes}
    for part in ("val", "test"):
        dataset = datasets[part]
        report[part] = {
            "n_samples": len(probs[part]),
            **scoring.score(
                torch.from_numpy(probs[part]),
                torch.from_numpy(dataset.targets[dataset.positions]),
                None,
                None,
                classes,
                label_type,
                dataset.cache.sample_ids[dataset.positions],
            ),
        }
    return report


def forest_report(
    datasets: Mapping[str, MultiViewDataset],
    label_type: str,
    classes: list[str],
    trees: int,
    scoring: Scoring,
) -> dict:
    """The random forest on ``sample_features``, fitted on the ``train`` items and scored
    on ``val`` and ``test`` like a model."""
    features = {part: _hand_crafted(dataset) for part, dataset in datasets.items()}
    train = datasets["train"]
    targets = train.targets[train.positions]
    forest = fit_forest(features["train"], targets, label_type, scoring.seed, trees)
    probs = {
        part: forest_probabilities(forest, features[part], label_type, len(classes))
        for part in ("val", "test")
    }
    report = _scored("random_forest", probs, datasets, label_type, classes, scoring)
    return {**report, "features_per_view": list(FEATURES)}


def logistic_report(
    datasets: Mapping[str, MultiViewDataset],
    label_type: str,
    classes: list[str],
    backbone: str,
    scoring: Scoring,
) -> dict:
    """The logistic regression on frozen ``backbone`` features (``item_features``), fitted
    on the ``train`` items and scored on ``val`` and ``test`` like a model: what a user gets
    without training a network."""
    features = {part: item_features(dataset, backbone) for part, dataset in datasets.items()}
    train = datasets["train"]
    model = fit_logistic(
        features["train"], train.targets[train.positions], label_type, scoring.seed
    )
    probs = {
        part: logistic_probabilities(model, features[part], label_type, len(classes))
        for part in ("val", "test")
    }
    report = _scored("frozen_logistic", probs, datasets, label_type, classes, scoring)
    return {**report, "backbone": backbone}


BASELINES = ("random_forest", "frozen_logistic")


def beside_network(baselines: dict | None, split_id: str) -> dict:
    """Each baseline's val and test macro-F1 (with interval) for the network's report, so
    one file tells whether the network adds anything; none made on another split."""
    if not baselines or baselines.get("split_id") != split_id:
        return {"note": "no baseline on this split: `kedro run --pipelines=train` makes them"}
    figures = ("macro_f1", "macro_f1_ci95")
    return {
        name: {
            part: {k: baselines[name][part][k] for k in figures if k in baselines[name][part]}
            for part in ("val", "test")
        }
        for name in BASELINES
    }
