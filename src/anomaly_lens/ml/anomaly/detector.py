"""The anomaly detector as an artefact: the fitted anomalib model with what prepares its
input and what reads its output (input size, resize rule, normalisation, threshold), so
the pipeline, inference and the served model score images alike. No Kedro."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from anomaly_lens.ml.anomaly import create_method
from anomaly_lens.ml.data.cache import build_image_cache
from anomaly_lens.ml.data.imaging import encode_png
from anomaly_lens.ml.models.pretrained import grey_normalisation, weight_package


@dataclass
class AnomalyMethodSettings:
    """What builds and fits a method (the ``anomaly`` block's method keys)."""

    layers: list[str]
    neighbours: int = 9
    coreset_ratio: float = 0.01
    padim_features: int = 100
    seed: int = 42


@dataclass
class AnomalyDetector:
    """A detector of one method fitted on the normal train images of one split.

    ``image_size`` and ``resize`` are how images were squared (the image cache's rule);
    ``threshold``: the image score above which an image is called anomalous, and the rule
    that set it on validation; ``split_id``: the split whose train images it learnt.
    """

    method: str
    backbone: str
    settings: AnomalyMethodSettings
    image_size: int
    resize: str
    views: list[str]
    split_id: str
    n_train_images: int = 0
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    threshold: float | None = None
    threshold_rule: str = ""
    _model: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}

    def build(self) -> torch.nn.Module:
        """The method's anomalib model with the package weights (not yet fitted)."""
        return create_method(self.method).create(
            self.backbone, list(self.settings.layers), self.settings
        )

    def model(self) -> torch.nn.Module:
        """The fitted model in eval mode, built once from ``state_dict``."""
        if self._model is None:
            model = self.build()
            model.load_state_dict(self.state_dict)
            self._model = model.eval()
        return self._model

    def prepare(self, images: np.ndarray) -> torch.Tensor:
        """(N, S, S) uint8 grey squares as the backbone's 3-channel normalised input (grey
        repeated: the same as summing the RGB filters)."""
        mean, std = grey_normalisation(weight_package(self.backbone), 3)
        mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        pixels = torch.from_numpy(np.ascontiguousarray(images)).float().div(255).unsqueeze(1)
        return (pixels.expand(-1, 3, -1, -1) - mean) / std

    def fit(self, images: np.ndarray, batch_size: int = 32) -> AnomalyDetector:
        """Learn normality from (N, S, S) normal images."""
        method, model = create_method(self.method), self.build()
        model.train()
        with torch.no_grad():
            for batch in _batches(images, batch_size):
                model(self.prepare(batch))
        method.finish_fit(model, self.settings)
        self.state_dict = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.n_train_images = len(images)
        self._model = model.eval()
        return self

    @torch.no_grad()
    def score(self, images: np.ndarray, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Image scores (N,) and anomaly maps (N, S, S) of (N, S, S) grey squares."""
        model, scores, maps = self.model(), [], []
        for batch in _batches(images, batch_size):
            out = model(self.prepare(batch))
            scores.append(out.pred_score.reshape(-1).numpy())
            maps.append(out.anomaly_map[:, 0].numpy())
        if not scores:
            size = self.image_size
            return np.zeros(0, np.float32), np.zeros((0, size, size), np.float32)
        return np.concatenate(scores).astype(np.float32), np.concatenate(maps).astype(np.float32)

    def score_samples(
        self,
        samples: pd.DataFrame,
        manifest: pd.DataFrame,
        masks: pd.DataFrame,
        read: Callable[[str], bytes],
        batch_size: int = 32,
    ) -> pd.DataFrame:
        """New paired samples read as the detector's train images were (its views, size and
        resize rule): a ``photo`` row per present view (``item_id`` ``sample/view``) and a
        ``sample`` row (its highest photo score), with ``anomaly_score`` and ``anomalous``;
        and each photo's anomaly map by ``item_id``."""
        views = [v for v in self.views if f"image_{v}" in samples]
        cache = build_image_cache(
            samples,
            manifest,
            masks,
            read,
            views=views,
            classes=[],
            image_size=self.image_size,
            resize=self.resize,
        )
        sample_of, view_of = np.nonzero(cache.view_mask)
        scores, maps = self.score(cache.images[sample_of, view_of], batch_size)
        photos = pd.DataFrame(
            {
                "sample_id": cache.sample_ids[sample_of].astype(str),
                "view": np.asarray(views, dtype=object)[view_of],
                "anomaly_score": scores.astype(np.float64),
            }
        )
        photos.insert(0, "item_id", photos["sample_id"] + "/" + photos["view"])
        per_sample = photos.groupby("sample_id", as_index=False, sort=False)["anomaly_score"]
        table = pd.concat(
            [
                photos.assign(level="photo"),
                per_sample.max().assign(item_id=lambda f: f["sample_id"], level="sample"),
            ],
            ignore_index=True,
        )
        table = table.assign(anomalous=self.flag(table["anomaly_score"].to_numpy()))
        return table, dict(zip(photos["item_id"], maps, strict=True))

    def map_png(self, heat: np.ndarray) -> bytes:
        """An anomaly map as an 8-bit PNG at the detector's input size, on the threshold's
        scale: 128 is the image threshold, 255 twice it or more (maps of every image alike)."""
        if self.threshold is None:
            raise ValueError("the detector has no threshold: set one on validation first")
        scaled = np.clip(np.round(heat / (2 * self.threshold) * 255), 0, 255)
        return encode_png(scaled.astype(np.uint8))

    def flag(self, scores: np.ndarray) -> np.ndarray:
        """Which scores are above the threshold (anomalous)."""
        if self.threshold is None:
            raise ValueError("the detector has no threshold: set one on validation first")
        return scores > self.threshold


def _batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]
