"""Predicting new images: decisions and abstention, and the model as one ONNX graph.

No Kedro. ``ProbabilityModel`` is what leaves the project: resize, the model (which
normalises its input itself), temperature and sigmoid/softmax in one module, exported to
ONNX by ``export_onnx`` and checked against PyTorch by ``onnx_probabilities``.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import mlflow
import numpy as np
import onnx
import onnxruntime
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from anomaly_lens.ml.batch import Batch
from anomaly_lens.ml.boxes import find_components
from anomaly_lens.ml.data import MultiViewDataset, view_pixels
from anomaly_lens.ml.fitting import load_model, predict, probability_columns
from anomaly_lens.ml.imaging import encode_png
from anomaly_lens.ml.training import probabilities
from anomaly_lens.ml.tta import orientations, tta_mode

logger = logging.getLogger(__name__)

ONNX_INPUTS = ("images", "view_mask")
ONNX_OUTPUT = "probabilities"
ONNX_LOGITS = "logits"  # divided by the temperature: what test-time augmentation averages


class ProbabilityModel(nn.Module):
    """Images in [0, 1], shape ``(batch, views, 1, H, W)`` at any H x W, and the view mask
    ``(batch, views)`` -> class probabilities ``(batch, classes)`` and the logits they
    come from.

    Resizes to the model's ``image_size`` (bilinear), divides the logits by
    ``temperature`` (1: uncalibrated; one, or one per class), then sigmoid (multi-label) or softmax (multi-class).
    """

    def __init__(self, model: nn.Module, image_size: int, temperature: float | list[float] = 1.0):
        super().__init__()
        self.model, self.image_size = model.eval(), image_size
        self.register_buffer("temperature", torch.as_tensor(temperature, dtype=torch.float32))

    def forward(
        self, images: torch.Tensor, view_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, views = images.shape[:2]
        flat = images.reshape(batch * views, *images.shape[2:])
        flat = F.interpolate(flat, size=(self.image_size, self.image_size), mode="bilinear")
        images = flat.reshape(batch, views, *flat.shape[1:])
        logits = self.model(images, view_mask).logits / self.temperature
        return probabilities(logits, self.model.config.label_type), logits


def export_onnx(
    model: ProbabilityModel,
    images: torch.Tensor,
    view_mask: torch.Tensor,
    metadata: dict[str, object] | None = None,
) -> bytes:
    """The ONNX graph of ``model`` (PyTorch's dynamo exporter) with a dynamic batch, height
    and width; ``images``/``view_mask`` are an example batch; ``metadata`` (JSON values) is
    stored in the model's metadata properties (``onnx_metadata`` reads it back)."""
    if model.model.classifier is None:
        raise ValueError("A segmentation-only model has no class probabilities to export")
    batch = torch.export.Dim("batch", min=1)
    height, width = (torch.export.Dim(name, min=8, max=8192) for name in ("height", "width"))
    program = torch.onnx.export(
        model,
        (images, view_mask),
        input_names=list(ONNX_INPUTS),
        output_names=[ONNX_OUTPUT, ONNX_LOGITS],
        dynamic_shapes={"images": {0: batch, 3: height, 4: width}, "view_mask": {0: batch}},
        dynamo=True,
        verbose=False,
    )
    buffer = io.BytesIO()
    program.save(buffer)
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, {k: json.dumps(v) for k, v in (metadata or {}).items()})
    return graph.SerializeToString()


def onnx_metadata(onnx_model: bytes) -> dict[str, object]:
    """The metadata ``export_onnx`` stored."""
    graph = onnx.load_from_string(onnx_model)
    return {prop.key: json.loads(prop.value) for prop in graph.metadata_props}


def onnx_session(onnx_model: bytes):
    """An onnxruntime CPU session of an exported model."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


def onnx_output(session, images: np.ndarray, view_mask: np.ndarray, name: str) -> np.ndarray:
    """The output ``name`` (``ONNX_OUTPUT`` or ``ONNX_LOGITS``) of an onnxruntime session of
    an exported model."""
    feeds = {"images": images.astype(np.float32), "view_mask": view_mask.astype(bool)}
    return session.run([name], feeds)[0]


def onnx_probabilities(session, images: np.ndarray, view_mask: np.ndarray) -> np.ndarray:
    """Probabilities from an onnxruntime session of an exported model."""
    return onnx_output(session, images, view_mask, ONNX_OUTPUT)


def averaged_onnx_probabilities(
    session, images: torch.Tensor, view_mask: torch.Tensor, tta: str, label_type: str
) -> np.ndarray:
    """Probabilities from the exported graph's logits averaged over the orientations of
    ``tta`` (``ml.tta``), as ``predict`` averages the network's."""
    if ONNX_LOGITS not in {output.name for output in session.get_outputs()}:
        raise ValueError(
            "The exported ONNX model has no logits output (exported by an earlier version): "
            "run `kedro run --pipelines=export` again"
        )
    present = view_mask.numpy()
    found = [
        onnx_output(session, turn.apply(images).contiguous().numpy(), present, ONNX_LOGITS)
        for turn in orientations(tta)
    ]
    logits = torch.from_numpy(np.mean(found, axis=0, dtype=np.float32))
    return probabilities(logits, label_type).numpy()


@dataclass(frozen=True)
class DecisionRule:
    """How probabilities become decisions, and when a prediction abstains.

    Multi-label: a class is predicted where its probability reaches ``threshold``; the
    confidence is that of the least certain class, ``min_k max(p_k, 1 - p_k)``.
    Multi-class: the most probable class; the confidence is its probability. A prediction
    abstains when its confidence is under ``min_confidence`` or it is out of distribution.
    """

    threshold: float | tuple[float, ...] = 0.5  # one for all classes, or one per class
    min_confidence: float = 0.0

    def apply(
        self, probs: np.ndarray, label_type: str, out_of_distribution: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decisions (0/1 per class), confidence and abstain flag per row."""
        if label_type == "multiclass":
            decisions = np.eye(probs.shape[1], dtype=np.uint8)[probs.argmax(1)]
            confidence = probs.max(1)
        else:
            decisions = (probs >= np.asarray(self.threshold)).astype(np.uint8)
            confidence = np.maximum(probs, 1 - probs).min(1)
        abstain = confidence < self.min_confidence
        if out_of_distribution is not None:
            abstain |= out_of_distribution
        return decisions, confidence, abstain


class ImageFileModel(mlflow.pyfunc.PythonModel):
    """The trained model as an MLflow pyfunc: a table of image paths in, predictions out.

    ``model_input`` has one column per view the model reads (``co2``, ``ch4``; a per-view
    model: ``image``), each cell a path (empty where the view is missing). Images are
    prepared exactly as the training cache prepares them. Returns ``prob_<class>``,
    ``pred_<class>``, ``confidence`` and ``abstain`` per row.
    """

    def __init__(self, bundle: dict, rule: DecisionRule, tta: str = "hflip"):
        self.bundle, self.rule, self.tta = bundle, rule, tta
        self._network = None

    def __setstate__(self, state: dict) -> None:
        """Models pickled before the test-time modes hold ``tta`` as a bool."""
        self.__dict__.update(state, tta=tta_mode(state["tta"]))

    @property
    def columns(self) -> list[str]:
        """The input table's columns: the model's views (``image`` for a per-view model)."""
        return ["image"] if self.bundle["per_view"] else list(self.bundle["views"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if self.bundle["input_clahe"]:
            raise ValueError("Models trained on CLAHE-equalised images are not served here")
        if self._network is None:  # built on first use: the pickled model carries weights only
            self._network = load_model(self.bundle)
        missing = [c for c in self.columns if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks the view columns {missing}")
        size, classes = self.bundle["image_size"], self.bundle["classes"]
        images = np.zeros((len(model_input), len(self.columns), size, size), np.float32)
        present = model_input[self.columns].notna().to_numpy()
        for (row, slot), path in np.ndenumerate(model_input[self.columns].to_numpy(object)):
            if present[row, slot]:
                images[row, slot] = view_pixels(Path(path).read_bytes(), size)[0] / 255.0
        batch = Batch(
            torch.from_numpy(images).unsqueeze(2),
            torch.from_numpy(present),
            labels=torch.zeros(len(images), len(classes)),
        )
        probs = predict(self._network, [batch], self.tta).probs.numpy()
        decisions, confidence, abstain = self.rule.apply(probs, self.bundle["label_type"])
        table = pd.DataFrame(probs, columns=probability_columns("prob", classes))
        table[probability_columns("pred", classes)] = decisions
        return table.assign(confidence=confidence, abstain=abstain)


def predicted_objects(
    dataset: MultiViewDataset,
    seg_probs: torch.Tensor,
    mask_classes: list[str],
    threshold: float = 0.5,
    min_area: int = 1,
) -> tuple[list[str], dict[str, bytes]]:
    """Boxes (a JSON list per item) and mask PNGs (``<item>/<class>``) of predicted masks.

    Masks are thresholded at ``threshold``, resized (nearest) to the item's first present
    view's original size, and split into 8-connected components of at least ``min_area``
    pixels (the ``bbox`` pipeline's ``find_components``); boxes are in that view's pixels.
    """
    boxes, pngs = [], {}
    masks = (seg_probs >= threshold).numpy()
    for k, (position, views) in enumerate(dataset.items):
        present = [j for j in views if dataset.cache.view_mask[position, j]]
        height, width = (int(x) for x in dataset.cache.view_shapes[position, present[0]])
        found = []
        for c, name in enumerate(mask_classes):
            if not masks[k, c].any():
                continue
            full = cv2.resize(
                masks[k, c].astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST
            )
            pngs[f"{dataset.item_id(k)}/{name}"] = encode_png(full * 255)
            components, _ = find_components(full, min_area)
            found += [
                {
                    "class": name,
                    "x0": o.x0,
                    "y0": o.y0,
                    "x1": o.x1,
                    "y1": o.y1,
                    "pixel_count": o.pixel_count,
                }
                for o in components
            ]
        boxes.append(json.dumps(found))
    return boxes, pngs
