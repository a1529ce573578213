"""Out-of-distribution detection: scores from a trained model, the sets they are tested on.

No Kedro. The detectors (``ml.evaluation.detectors``, one module each) come from
pytorch-ood (maximum softmax, energy, Mahalanobis, k nearest neighbours) and scikit-learn
(IsolationForest); only the multi-label maximum-sigmoid score is written here
(pytorch-ood's ``MaxSoftmax`` normalises over classes, which a sigmoid model does not).
``OODScorer`` fits one for a model. Every score is an outlier score: larger means more
likely OOD.

The corruptions and the far-OOD textures are written here with NumPy and OpenCV so that
their severities are explicit and reproducible (``CORRUPTIONS``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import cv2
import numpy as np
import torch
from pytorch_ood.metrics import OODMetrics

from anomaly_lens.ml.data.batch import Batch
from anomaly_lens.ml.evaluation.detectors import DETECTORS, OOD_DETECTORS
from anomaly_lens.ml.evaluation.predictions import predict


def logits_and_features(
    model: torch.nn.Module, batches: Iterable[Batch]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class logits and the pooled features the class head reads, per item."""
    if model.classifier is None:
        raise ValueError("OOD scores need a model with a class head")
    found = predict(model, batches, tta="none")
    return found.logits, found.features


class OODScorer:
    """One registered detector fitted on the training items' logits and features, for the
    model ``model_id``.

    ``threshold``: the score above which an item is flagged, set by ``set_threshold`` so
    that a share of in-distribution (validation) items stays below it.
    """

    def __init__(
        self,
        name: str,
        label_type: str,
        seed: int = 0,
        neighbours: int = 50,
        model_id: str | None = None,
    ):
        if name not in OOD_DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, not {name!r}")
        self.name, self.label_type, self.seed = name, label_type, seed
        self.neighbours = neighbours
        self.model_id = model_id  # the model whose logits and features it reads
        self.threshold: float | None = None
        self._fitted = None

    @property
    def reads_images(self) -> bool:
        """Whether it scores the items' images (``pixels``) rather than logits and features."""
        return OOD_DETECTORS[self.name].reads_images

    def fit(
        self,
        logits: torch.Tensor,
        features: torch.Tensor,
        groups: np.ndarray,
        pixels: Pixels | None = None,
    ) -> OODScorer:
        """``groups``: a class index per item (Mahalanobis' class-conditional means);
        ``pixels``: the items' images, for a detector that reads them."""
        detector = OOD_DETECTORS[self.name]
        if detector.reads_images:
            self._fitted = detector.fit_images(*_required(pixels, self.name), self)
        else:
            self._fitted = detector.fit(logits, features, groups, self)
        return self

    def score(
        self, logits: torch.Tensor, features: torch.Tensor, pixels: Pixels | None = None
    ) -> np.ndarray:
        detector = OOD_DETECTORS[self.name]
        if detector.reads_images:
            return detector.score_images(self._fitted, *_required(pixels, self.name))
        return detector.score(self._fitted, logits, features, self.label_type)

    def set_threshold(self, in_distribution_scores: np.ndarray, kept: float) -> None:
        """The ``kept`` quantile of in-distribution scores: that share stays unflagged."""
        self.threshold = float(np.quantile(in_distribution_scores, kept))

    def flag(
        self, logits: torch.Tensor, features: torch.Tensor, pixels: Pixels | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and OOD flags (score above the threshold)."""
        scores = self.score(logits, features, pixels)
        return scores, scores > self.threshold


Pixels = tuple[np.ndarray, np.ndarray]  # (N, V, H, W) uint8 model-input images, (N, V) mask


def pixels_of(images: torch.Tensor, view_mask: torch.Tensor) -> Pixels:
    """Model-input items ``(N, V, 1, H, W)`` in [0, 1] as uint8 pixels and their view mask."""
    return (images[:, :, 0] * 255).round().to(torch.uint8).numpy(), view_mask.numpy().astype(bool)


def _required(pixels: Pixels | None, name: str) -> Pixels:
    if pixels is None:
        raise ValueError(f"the {name} OOD detector reads the items' images: pass their pixels")
    return pixels


def separation(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
    """AUROC, FPR at 95 % TPR and AUPR (OOD as the positive class) of two score sets."""
    metrics = OODMetrics()
    scores = torch.from_numpy(np.concatenate([in_scores, out_scores]).astype(np.float32))
    labels = torch.cat([torch.zeros(len(in_scores)), -torch.ones(len(out_scores))]).long()
    metrics.update(scores, labels)
    found = metrics.compute()
    return {"auroc": found["AUROC"], "fpr95": found["FPR95TPR"], "aupr": found["AUPR-OUT"]}


def _gaussian_noise(image, severity, rng):
    sigma = (0.08, 0.12, 0.18, 0.26, 0.38)[severity - 1] * 255
    return image + rng.normal(0, sigma, image.shape)


def _blur(image, severity, rng):
    sigma = (1.0, 2.0, 3.0, 4.5, 6.0)[severity - 1]
    return cv2.GaussianBlur(image, (0, 0), sigma)


def _contrast(image, severity, rng):
    factor = (0.4, 0.3, 0.2, 0.1, 0.05)[severity - 1]
    return (image - image.mean()) * factor + image.mean()


def _occlusion(image, severity, rng):
    share = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    height, width = image.shape
    side_y, side_x = int(height * share**0.5), int(width * share**0.5)
    y, x = rng.integers(0, height - side_y + 1), rng.integers(0, width - side_x + 1)
    out = image.copy()
    out[y : y + side_y, x : x + side_x] = 0
    return out


def _jpeg(image, severity, rng):
    quality = (80, 65, 50, 30, 15)[severity - 1]
    _, encoded = cv2.imencode(".jpg", image.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)


def _brightness(image, severity, rng):
    return image + (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1] * 255


# name -> f(grey uint8 image as float, severity 1..5, rng) -> image; clipped to 0..255 after.
CORRUPTIONS: dict[str, Callable] = {
    "gaussian_noise": _gaussian_noise,
    "blur": _blur,
    "contrast": _contrast,
    "occlusion": _occlusion,
    "jpeg": _jpeg,
    "brightness": _brightness,
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``images`` (any leading shape, then H x W, uint8) with one corruption applied to each."""
    rng = np.random.default_rng(seed)
    flat = images.reshape(-1, *images.shape[-2:])
    out = np.stack([CORRUPTIONS[name](img.astype(np.float32), severity, rng) for img in flat])
    return np.clip(out, 0, 255).astype(np.uint8).reshape(images.shape)


def textures(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` grey procedural textures (checkerboards, stripes, smooth noise, gradients): a
    far-OOD set the project makes itself, unlike any inspection image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size), np.float32)
    for k in range(n):
        kind = k % 4
        if kind == 0:
            cells = rng.integers(2, 12)
            out[k] = ((np.floor(yy * cells) + np.floor(xx * cells)) % 2) * 255
        elif kind == 1:
            angle, freq = rng.uniform(0, np.pi), rng.uniform(3, 20)
            out[k] = 127.5 + 127.5 * np.sin(
                2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle))
            )
        elif kind == 2:
            noise = rng.normal(0, 1, (size, size)).astype(np.float32)
            smooth = cv2.GaussianBlur(noise, (0, 0), rng.uniform(1, 6))
            out[k] = (smooth - smooth.min()) / (np.ptp(smooth) + 1e-6) * 255
        else:
            cy, cx = rng.uniform(0, 1, 2)
            out[k] = np.hypot(yy - cy, xx - cx) / np.sqrt(2) * 255
    return np.clip(out, 0, 255).astype(np.uint8)
