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
    forest.fit(features, targets if label_type == "multilabel" else targets.argmax(1))
    return forest


def forest_probabilities(
    forest: RandomForestClassifier, features: np.ndarray, label_type: str, n_classes: int
) -> np.ndarray:
    """(N, K) probabilities in the class order of the targets."""
    if label_type == "multiclass":
        probs = np.zeros((len(features), n_classes), dtype=np.float32)
        probs[:, forest.classes_] = forest.predict_proba(features)
        return probs
    columns = []
    for k, proba in enumerate(forest.predict_proba(features)):
        known = list(forest.classes_[k])
        columns.append(proba[:, known.index(1)] if 1 in known else np.zeros(len(features)))
    return np.column_stack(columns).astype(np.float32)


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


def fit_logistic(features: np.ndarray, targets: np.ndarray, label_type: str, seed: int):
    """Standardised, class-balanced logistic regression (one-vs-rest for multi-label)."""
    classifier = LogisticRegression(class_weight="balanced", max_iter=3000, random_state=seed)
    if label_type == "multilabel":
        classifier = OneVsRestClassifier(classifier)
        labels = targets
    else:
        labels = targets.argmax(1)
    return make_pipeline(StandardScaler(), classifier).fit(features, labels)


def logistic_probabilities(model, features: np.ndarray, label_type: str, n_classes: int):
    """(N, K) probabilities in the class order of the targets."""
    probs = np.zeros((len(features), n_classes), dtype=np.float32)
    classes = model.classes_ if label_type == "multiclass" else np.arange(n_classes)
    probs[:, classes] = model.predict_proba(features)
    return probs


def forest_report(
    datasets: Mapping[str, MultiViewDataset],
    label_type: str,
    classes: list[str],
    trees: int,
    scoring: Scoring,
) -> dict:
    """The random forest on ``sample_features``, fitted on the ``train`` items and scored
    on ``val`` and ``test`` like a model."""
    features, targets = {}, {}
    for part, dataset in datasets.items():
        features[part] = sample_features(
            np.stack([dataset.cache.images[i][v] for i, v in dataset.items]),
            np.stack([dataset.cache.view_mask[i][v] for i, v in dataset.items]),
        )
        targets[part] = dataset.targets[dataset.positions]
    forest = fit_forest(features["train"], targets["train"], label_type, scoring.seed, trees)
    report = {
        "model": "random_forest",
        "features_per_view": list(FEATURES),
        "label_type": label_type,
        "classes": classes,
    }
    for part in ("val", "test"):
        probs = forest_probabilities(forest, features[part], label_type, len(classes))
        dataset = datasets[part]
        report[part] = {
            "n_samples": len(probs),
            **scoring.score(
                torch.from_numpy(probs),
                torch.from_numpy(targets[part]),
                None,
                None,
                classes,
                label_type,
                dataset.cache.sample_ids[dataset.positions],
            ),
        }
    return report
