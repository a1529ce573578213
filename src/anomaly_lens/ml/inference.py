"""Predicting new images: decisions and abstention, and the model as one ONNX graph.

No Kedro. ``ProbabilityModel`` is what leaves the project: resize, the model (which
normalises its input itself), temperature and sigmoid/softmax in one module, exported to
ONNX by ``export_onnx`` and checked against PyTorch by ``onnx_probabilities``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import onnxruntime
import torch
import torch.nn.functional as F
from torch import nn

from anomaly_lens.ml.training import probabilities

logger = logging.getLogger(__name__)

ONNX_INPUTS = ("images", "view_mask")
ONNX_OUTPUT = "probabilities"


class ProbabilityModel(nn.Module):
    """Images in [0, 1], shape ``(batch, views, 1, H, W)`` at any H x W, and the view mask
    ``(batch, views)`` -> class probabilities ``(batch, classes)``.

    Resizes to the model's ``image_size`` (bilinear), divides the logits by
    ``temperature`` (1: uncalibrated), then sigmoid (multi-label) or softmax (multi-class).
    """

    def __init__(self, model: nn.Module, image_size: int, temperature: float = 1.0):
        super().__init__()
        self.model, self.image_size, self.temperature = model.eval(), image_size, temperature

    def forward(self, images: torch.Tensor, view_mask: torch.Tensor) -> torch.Tensor:
        batch, views = images.shape[:2]
        flat = images.reshape(batch * views, *images.shape[2:])
        flat = F.interpolate(flat, size=(self.image_size, self.image_size), mode="bilinear")
        images = flat.reshape(batch, views, *flat.shape[1:])
        logits = self.model(images, view_mask).logits / self.temperature
        return probabilities(logits, self.model.config.label_type)


def export_onnx(model: ProbabilityModel, images: torch.Tensor, view_mask: torch.Tensor) -> bytes:
    """The ONNX graph of ``model`` (PyTorch's dynamo exporter) with a dynamic batch, height
    and width; ``images``/``view_mask`` are an example batch."""
    if model.model.classifier is None:
        raise ValueError("A segmentation-only model has no class probabilities to export")
    batch = torch.export.Dim("batch", min=1)
    height, width = (torch.export.Dim(name, min=8, max=8192) for name in ("height", "width"))
    program = torch.onnx.export(
        model,
        (images, view_mask),
        input_names=list(ONNX_INPUTS),
        output_names=[ONNX_OUTPUT],
        dynamic_shapes={"images": {0: batch, 3: height, 4: width}, "view_mask": {0: batch}},
        dynamo=True,
        verbose=False,
    )
    buffer = io.BytesIO()
    program.save(buffer)
    return buffer.getvalue()


def onnx_session(onnx_model: bytes):
    """An onnxruntime CPU session of an exported model."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


def onnx_probabilities(session, images: np.ndarray, view_mask: np.ndarray) -> np.ndarray:
    """Probabilities from an onnxruntime session of an exported model."""
    feeds = {"images": images.astype(np.float32), "view_mask": view_mask.astype(bool)}
    return session.run([ONNX_OUTPUT], feeds)[0]


@dataclass(frozen=True)
class DecisionRule:
    """How probabilities become decisions, and when a prediction abstains.

    Multi-label: a class is predicted where its probability reaches ``threshold``; the
    confidence is that of the least certain class, ``min_k max(p_k, 1 - p_k)``.
    Multi-class: the most probable class; the confidence is its probability. A prediction
    abstains when its confidence is under ``min_confidence`` or it is out of distribution.
    """

    threshold: float = 0.5
    min_confidence: float = 0.0

    def apply(
        self, probs: np.ndarray, label_type: str, out_of_distribution: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decisions (0/1 per class), confidence and abstain flag per row."""
        if label_type == "multiclass":
            decisions = np.eye(probs.shape[1], dtype=np.uint8)[probs.argmax(1)]
            confidence = probs.max(1)
        else:
            decisions = (probs >= self.threshold).astype(np.uint8)
            confidence = np.maximum(probs, 1 - probs).min(1)
        abstain = confidence < self.min_confidence
        if out_of_distribution is not None:
            abstain |= out_of_distribution
        return decisions, confidence, abstain
