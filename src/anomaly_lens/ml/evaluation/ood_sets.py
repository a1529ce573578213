"""The sets OOD detectors are measured on (the test items, their corruptions, a shifted
domain, far-OOD textures), their scores, and how well each detector separates them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.data.cache import ImageCache
from anomaly_lens.ml.evaluation.ood import (
    CORRUPTIONS,
    OODScorer,
    corrupt,
    logits_and_features,
    pixels_of,
    separation,
    textures,
)
from anomaly_lens.ml.models.bundle import ModelBundle
from anomaly_lens.ml.training.datasets import build_loaders, model_datasets

IN_DISTRIBUTION = "test"


@dataclass(frozen=True)
class Items:
    """Items as a model reads them: images ``(N, V, 1, H, W)`` in [0, 1], view mask, labels."""

    images: torch.Tensor
    view_mask: torch.Tensor
    labels: torch.Tensor

    def pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """The images as uint8 pixels and the view mask, for detectors that read images."""
        return pixels_of(self.images, self.view_mask)

    def batches(self, size: int = 64) -> list[Batch]:
        return [
            Batch(self.images[i : i + size], self.view_mask[i : i + size])
            for i in range(0, len(self.images), size)
        ]


def items_by_part(
    model: ModelBundle,
    cache: ImageCache,
    splits: pd.DataFrame,
    parts: list[str],
    seed: int,
    limit: int | None = None,
) -> dict[str, Items]:
    """Per part (a part without samples is left out): all its items, or at most ``limit``
    (a seeded draw)."""
    ids = {p: splits.loc[splits["split"] == p, "sample_id"].tolist() for p in parts}
    datasets = model_datasets(cache, {p: i for p, i in ids.items() if i}, model)
    out, rng = {}, np.random.default_rng(seed)
    for part, loader in build_loaders(datasets, 64, 0, False, seed, training_part="").items():
        batches = list(loader)
        keep = np.sort(rng.permutation(sum(len(b.images) for b in batches))[:limit])
        out[part] = Items(
            *(
                torch.cat([getattr(b, k) for b in batches])[keep]
                for k in ("images", "view_mask", "labels")
            )
        )
    return out


def class_groups(labels: torch.Tensor, label_type: str) -> np.ndarray:
    """A class per item for class-conditional detectors: multi-class, the class; multi-label,
    0 without labels, else 1 + its first label."""
    if label_type == "multiclass":
        return labels.argmax(1).numpy()
    return np.where(labels.sum(1) > 0, labels.argmax(1) + 1, 0)


def measured_sets(
    test: Items,
    shift: Items | None,
    seed: int,
    inside: str = IN_DISTRIBUTION,
    min_severity: int = 1,
) -> list[tuple]:
    """``(set, corruption, severity, Items)``: the in-distribution items (set ``inside``),
    each corruption of them at severities ``min_severity``-5, the shifted items where there
    are any, and textures (far-OOD)."""
    pixels = (test.images * 255).round().to(torch.uint8).numpy()
    sets = [(inside, "none", 0, test)]
    for k, name in enumerate(CORRUPTIONS):
        for severity in range(min_severity, 6):
            corrupted = corrupt(pixels, name, severity, seed + 10 * k + severity)
            images = torch.from_numpy(corrupted).float() / 255
            sets.append(("corruption", name, severity, Items(images, test.view_mask, test.labels)))
    if shift is not None:
        sets.append(("shift", "none", 0, shift))
    n, views, _, size, _ = test.images.shape
    far = textures(n * views, size, seed).reshape(n, views, 1, size, size)
    present = torch.ones(n, views, dtype=torch.bool)
    sets.append(
        ("far_ood", "textures", 0, Items(torch.from_numpy(far).float() / 255, present, test.labels))
    )
    return sets


def score_sets(network, detectors: dict[str, OODScorer], sets: list[tuple]) -> pd.DataFrame:
    """One row per item, set and detector: the detector's outlier score."""
    rows = []
    for kind, corruption, severity, items in sets:
        logits, features = logits_and_features(network, items.batches())
        pixels = items.pixels() if any(s.reads_images for s in detectors.values()) else None
        for name, scorer in detectors.items():
            rows.append(
                pd.DataFrame(
                    {"set": kind, "corruption": corruption, "severity": severity,
                     "detector": name, "score": scorer.score(logits, features, pixels)}
                )
            )  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def separation_table(
    scores: pd.DataFrame, detectors: dict[str, OODScorer], inside_set: str = IN_DISTRIBUTION
) -> pd.DataFrame:
    """Per set, corruption, severity and detector: AUROC, FPR95 and AUPR against the
    in-distribution items (set ``inside_set``), and the share its threshold flags."""
    inside = scores[scores["set"] == inside_set]
    outside = scores[scores["set"] != inside_set]
    rows = []
    keys = ["set", "corruption", "severity", "detector"]
    for (kind, corruption, severity, name), part in outside.groupby(keys, sort=False):
        reference = inside.loc[inside["detector"] == name, "score"].to_numpy()
        rows.append(
            {"set": kind, "corruption": corruption, "severity": int(severity), "detector": name,
             **separation(reference, part["score"].to_numpy()),
             "flagged_share": float((part["score"] > detectors[name].threshold).mean())}
        )  # fmt: skip
    return pd.DataFrame(rows)


HEADLINE_SEVERITY = 3  # the headline (and the choice of detector) reads severities 3-5


def headline_aurocs(table: pd.DataFrame) -> pd.DataFrame:
    """Per detector: mean AUROC on corruptions of severity 3 and more, AUROC on far-OOD."""
    hard = table[(table["set"] == "corruption") & (table["severity"] >= HEADLINE_SEVERITY)]
    return pd.DataFrame(
        {
            "corruption_severity_3plus": hard.groupby("detector")["auroc"].mean(),
            "far_ood": table[table["set"] == "far_ood"].set_index("detector")["auroc"],
        }
    )


def choose_detector(val_table: pd.DataFrame) -> tuple[str, dict]:
    """The detector with the best mean of the two headline AUROCs on validation-side sets
    (corruptions of val items, textures of another seed), and every detector's figures."""
    found = headline_aurocs(val_table)
    mean = found.mean(axis=1)
    per_detector = found.assign(mean=mean).to_dict("index")
    return str(mean.idxmax()), per_detector


def detector_summary(table: pd.DataFrame, chosen: str) -> tuple[dict, dict]:
    """The chosen detector's mean AUROC on corruptions of severity 3 and more and on
    far-OOD; and the best detector on these same figures, labelled as selected on them."""
    found = headline_aurocs(table)
    corruption_auroc, far_auroc = found["corruption_severity_3plus"], found["far_ood"]
    summary = {
        "chosen_detector": chosen,
        "chosen_auroc_corruption_severity_3plus": float(corruption_auroc[chosen]),
        "chosen_auroc_far_ood": float(far_auroc[chosen]),
    }
    selected = {
        "note": "the highest AUROC of all detectors on these test sets: selected on test",
        "corruption_severity_3plus": {
            "detector": str(corruption_auroc.idxmax()), "auroc": float(corruption_auroc.max())
        },
        "far_ood": {"detector": str(far_auroc.idxmax()), "auroc": float(far_auroc.max())},
    }  # fmt: skip
    return summary, selected
