"""The model as one ONNX graph, and its probabilities through onnxruntime.

No Kedro. ``ProbabilityModel`` is what leaves the project: resize, the model (which
normalises its input itself), temperature and sigmoid/softmax in one module, exported to
ONNX by ``export_onnx`` and checked against PyTorch by ``onnx_probabilities``.
"""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import onnx
import onnxruntime
import torch
import torch.nn.functional as F
from torch import nn

from anomaly_lens.ml.evaluation.tta import orientations
from anomaly_lens.ml.training.module import probabilities

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
    ``tta`` (``ml.evaluation.tta``), as ``predict`` averages the network's."""
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


def graph_description(onnx_model: bytes) -> dict:
    """Opset, inputs with their (dynamic) dimensions, output names and size of a graph."""
    graph = onnx.load_from_string(onnx_model)
    return {
        "opset": int(next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))),
        "inputs": {
            i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in graph.graph.input
        },
        "input_names": list(ONNX_INPUTS),
        "output": ONNX_OUTPUT,
        "logits_output": ONNX_LOGITS,
        "size_bytes": len(onnx_model),
    }
