"""Attributions (Captum) for every model the project trains, many images per call.

Views go to Captum as a tuple of inputs, one ``(B, C, H, W)`` tensor per view slot, so each
method returns one map per view; the view mask and the explained region travel as extra
forward arguments. A missing view's map is zero (its pixels never reach the model). What is
explained is a score per class: the class logit (classification), or the summed mask logits
of the region the model predicts for the class (segmentation). No Kedro.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from captum.attr import (
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from pydantic import Field, PositiveInt
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from anomaly_lens.ml.training.module import probabilities
from anomaly_lens.ml.training.settings import Settings

METHODS = ("integrated_gradients", "saliency", "smoothgrad", "grad_cam", "occlusion")
HEADS = ("classification", "segmentation")


class AttributionSettings(Settings):
    """How each method is run (``xai.attribution`` in the parameters)."""

    methods: list[Literal[METHODS]] = list(METHODS)
    baseline: Literal["zeros", "blur"] = "blur"  # Integrated Gradients' baseline
    n_steps: PositiveInt = 32
    internal_batch_size: PositiveInt = 128
    smoothgrad_samples: PositiveInt = 8
    smoothgrad_stdev: float = Field(default=0.1, gt=0.0)
    grad_cam_stage: int = -1  # encoder stage (negative: from the end)
    occlusion_window: PositiveInt = 16  # pixels of the model input
    occlusion_stride: PositiveInt = 8
    batch_size: PositiveInt = 16  # images per Captum call


class ExplainedScores(nn.Module):
    """The model as Captum calls it: ``forward(*views, view_mask, region)`` -> ``(B, K)``.

    ``head="classification"``: the class logits. ``head="segmentation"``: per mask class,
    the mask logits summed over ``region`` (``(B, K, H, W)``, the predicted mask).
    """

    def __init__(self, model: nn.Module, head: str):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {head!r}")
        self.model, self.head = model, head

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        *views, view_mask, region = args
        output = self.model(torch.stack(views, 1), view_mask)
        if self.head == "classification":
            return output.logits
        return (output.seg_logits * region).flatten(2).sum(-1)

    @torch.no_grad()
    def confidence(self, images: torch.Tensor, view_mask: torch.Tensor, region, targets):
        """The explained class's probability (classification), or the mean mask
        probability over its region (segmentation): what the deletion curve follows."""
        output = self.model(images, view_mask)
        rows = torch.arange(len(images))
        if self.head == "classification":
            return probabilities(output.logits, self.model.config.label_type)[rows, targets]
        area = region[rows, targets].flatten(1)
        mask_probs = torch.sigmoid(output.seg_logits[rows, targets]).flatten(1)
        return (mask_probs * area).sum(1) / area.sum(1).clamp_min(1)

    @torch.no_grad()
    def region(self, images: torch.Tensor, view_mask: torch.Tensor) -> torch.Tensor | None:
        """Segmentation: the predicted mask of every class (probability >= 0.5), or its most
        probable pixel where it predicts none. None for classification."""
        if self.head == "classification":
            return None
        probs = torch.sigmoid(self.model(images, view_mask).seg_logits)
        region = (probs >= 0.5).float()
        empty = region.flatten(2).sum(-1) == 0
        peak = F.one_hot(probs.flatten(2).argmax(-1), probs[0, 0].numel()).view_as(probs)
        return torch.where(empty[..., None, None], peak.float(), region)


def default_head(model: nn.Module) -> str:
    """Classification where the model has that head, else segmentation."""
    return "classification" if model.classifier is not None else "segmentation"


def view_encoders(model: nn.Module) -> list[nn.Module]:
    """The encoders of a model's fusion: one (shared or early fusion) or one per view."""
    fusion = model.fusion
    return [fusion.encoder] if hasattr(fusion, "encoder") else list(fusion.views.encoders)


def per_view_grad_cam(model: nn.Module) -> bool:
    """Whether Grad-CAM gives one map per view (False for early fusion: one map for all)."""
    return not hasattr(model.fusion, "encoder")


def _baselines(images: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "zeros":
        return torch.zeros_like(images)
    side = images.shape[-1]
    kernel = 2 * (side // 8) + 1
    flat = images.flatten(0, 1)
    return gaussian_blur(flat, [kernel, kernel], [side / 8.0, side / 8.0]).view_as(images)


def _grad_cam(
    scores: ExplainedScores, inputs, targets, extra, stage: int, size
) -> list[torch.Tensor]:
    """One ``(B, H, W)`` Grad-CAM map per view slot, upsampled to the input size."""
    encoders = view_encoders(scores.model)
    batch, n_views = inputs[0].shape[0], len(inputs)
    maps = []
    for encoder in encoders:
        layer = encoder.stage_module(stage)
        cam = LayerGradCam(scores, layer).attribute(
            inputs, target=targets, additional_forward_args=extra, relu_attributions=True
        )
        maps.append(LayerAttribution.interpolate(cam, size, "bilinear")[:, 0])
    if len(encoders) == n_views and n_views > 1:  # one encoder per view
        return maps
    (cam,) = maps
    if cam.shape[0] == batch * n_views:  # shared encoder: views flattened into the batch
        return list(cam.view(batch, n_views, *size).unbind(1))
    return [cam] * n_views  # early fusion: one map for the stacked views


def _attribute_batch(
    scores: ExplainedScores,
    images: torch.Tensor,
    view_mask: torch.Tensor,
    targets: torch.Tensor,
    method: str,
    settings: AttributionSettings,
) -> torch.Tensor:
    """``(B, V, H, W)`` attributions of one batch (summed over channels)."""
    inputs = tuple(v.clone().requires_grad_(True) for v in images.unbind(1))
    extra = (view_mask, scores.region(images, view_mask))
    size = tuple(images.shape[-2:])
    if method == "integrated_gradients":
        baselines = tuple(_baselines(images, settings.baseline).unbind(1))
        found = IntegratedGradients(scores).attribute(
            inputs,
            baselines=baselines,
            target=targets,
            additional_forward_args=extra,
            n_steps=settings.n_steps,
            internal_batch_size=settings.internal_batch_size,
        )
    elif method == "saliency":
        found = Saliency(scores).attribute(
            inputs, target=targets, additional_forward_args=extra, abs=True
        )
    elif method == "smoothgrad":
        found = NoiseTunnel(Saliency(scores)).attribute(
            inputs,
            nt_type="smoothgrad",
            nt_samples=settings.smoothgrad_samples,
            nt_samples_batch_size=settings.smoothgrad_samples,
            stdevs=settings.smoothgrad_stdev,
            target=targets,
            additional_forward_args=extra,
            abs=True,
        )
    elif method == "grad_cam":
        found = _grad_cam(scores, inputs, targets, extra, settings.grad_cam_stage, size)
    elif method == "occlusion":
        channels, side = images.shape[2], min(images.shape[-2:])
        window = min(settings.occlusion_window, side)  # a window larger than the image: all of it
        stride = min(settings.occlusion_stride, window)
        found = Occlusion(scores).attribute(
            inputs,
            sliding_window_shapes=tuple((channels, window, window) for _ in inputs),
            strides=tuple((channels, stride, stride) for _ in inputs),
            baselines=tuple(torch.zeros_like(v) for v in inputs),
            target=targets,
            additional_forward_args=extra,
            perturbations_per_eval=8,
        )
    else:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    maps = torch.stack([f if f.ndim == 3 else f.sum(1) for f in found], 1).detach()
    return maps * view_mask[..., None, None].to(maps.dtype)


@dataclass
class Attributions:
    """One method's maps ``(N, V, H, W)`` and the seconds it took per image."""

    method: str
    maps: torch.Tensor
    seconds_per_image: float


def attribute(
    scores: ExplainedScores,
    images: torch.Tensor,
    view_mask: torch.Tensor,
    targets: torch.Tensor,
    method: str,
    settings: AttributionSettings,
) -> Attributions:
    """Attributions of ``targets`` (one class index per image, in the explained head's
    classes) for ``images`` ``(N, V, C, H, W)``, ``settings.batch_size`` images per call."""
    started = time.perf_counter()
    with torch.enable_grad():
        maps = [
            _attribute_batch(
                scores,
                images[i : i + settings.batch_size],
                view_mask[i : i + settings.batch_size],
                targets[i : i + settings.batch_size],
                method,
                settings,
            )
            for i in range(0, len(images), settings.batch_size)
        ]
    seconds = time.perf_counter() - started
    return Attributions(method, torch.cat(maps), seconds / max(len(images), 1))


@torch.no_grad()
def deletion_curves(
    scores: ExplainedScores,
    images: torch.Tensor,
    view_mask: torch.Tensor,
    targets: torch.Tensor,
    order: torch.Tensor,
    steps: int,
    baseline: str,
    batch_size: int = 64,
) -> torch.Tensor:
    """``(N, steps + 1)`` confidence in the explained class as the pixels are replaced by
    the baseline, ``order`` (``(N, V, H, W)``, highest first) deciding which go first: after
    step ``s``, the top ``s / steps`` of each sample's present pixels. A faithful map makes
    the curve fall fast (a low area under it)."""
    curves = []
    for i in range(0, len(images), batch_size):
        chunk, present = images[i : i + batch_size], view_mask[i : i + batch_size]
        wanted, ranking = targets[i : i + batch_size], order[i : i + batch_size]
        region = scores.region(chunk, present)
        fill = _baselines(chunk, baseline)
        pixels = (present[..., None, None] & torch.ones_like(ranking, dtype=torch.bool)).flatten(1)
        ranking = ranking.flatten(1).masked_fill(~pixels, float("-inf"))
        rank = ranking.argsort(1, descending=True).argsort(1)  # 0 = deleted first
        counts = pixels.sum(1, keepdim=True)
        rows = []
        for step in range(steps + 1):
            deleted = (rank < (counts * step) // steps).view_as(chunk[:, :, 0]).unsqueeze(2)
            mixed = torch.where(deleted, fill, chunk)
            rows.append(scores.confidence(mixed, present, region, wanted))
        curves.append(torch.stack(rows, 1))
    return torch.cat(curves)


def curve_area(curves: torch.Tensor) -> torch.Tensor:
    """Area under deletion curves sampled evenly on [0, 1] (trapezoids), per curve."""
    return torch.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), dim=1)
