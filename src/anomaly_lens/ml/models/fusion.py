"""Multi-view fusion: from (B, V, C, H, W) images and a view mask to one feature pyramid.

Every fusion returns a list of fused feature maps, finest first, plus optional attention
weights. Missing views (``view_mask`` False) never contribute: their pixels are zeros and
their features are excluded by masking. One view is the single-view case of the same API.
"""

from __future__ import annotations

import torch
from torch import nn

from anomaly_lens.ml.models.encoder import Encoder
from anomaly_lens.ml.registry import Registry

FUSIONS = Registry("fusion")
register_fusion = FUSIONS.register


def masked_mean(features: torch.Tensor, view_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the view axis (dim 1) of (B, V, ...) features, present views only."""
    weights = view_mask.to(features.dtype).view(*view_mask.shape, *([1] * (features.ndim - 2)))
    return (features * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class _PerViewEncoders(nn.Module):
    """One encoder shared by all views, or one per view."""

    def __init__(self, n_views: int, shared: bool, **encoder_args):
        super().__init__()
        count = 1 if shared else n_views
        self.encoders = nn.ModuleList(Encoder(**encoder_args) for _ in range(count))
        self.channels = self.encoders[0].channels
        self.reductions = self.encoders[0].reductions

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per-view pyramids stacked on dim 1: a list of (B, V, C_i, H_i, W_i)."""
        b, v = images.shape[:2]
        if len(self.encoders) == 1:
            levels = self.encoders[0](images.flatten(0, 1))
            return [f.view(b, v, *f.shape[1:]) for f in levels]
        per_view = [enc(images[:, i]) for i, enc in enumerate(self.encoders)]
        return [torch.stack(level, dim=1) for level in zip(*per_view, strict=True)]


@register_fusion("early")
class EarlyFusion(nn.Module):
    """Views as channels of one image, plus one presence channel per view.

    One encoder reads the stacked views, so ``shared_encoder`` (an option of the other
    fusions) changes nothing here: switching ``fusion`` alone keeps a valid config.
    """

    def __init__(self, n_views: int, in_chans: int, shared_encoder: bool = True, **encoder_args):
        super().__init__()
        self.encoder = Encoder(in_chans=n_views * (in_chans + 1), **encoder_args)
        self.channels, self.reductions = self.encoder.channels, self.encoder.reductions

    def forward(self, images: torch.Tensor, view_mask: torch.Tensor):
        b, v, c, h, w = images.shape
        presence = view_mask.to(images.dtype).view(b, v, 1, 1, 1).expand(b, v, 1, h, w)
        stacked = torch.cat([images * presence, presence], dim=2).view(b, v * (c + 1), h, w)
        return self.encoder(stacked), None


@register_fusion("late")
class LateFusion(nn.Module):
    """Each view encoded alone (shared or separate weights), fused after the encoder.

    ``pooling='mean'``: masked mean of the views' feature maps. ``pooling='concat'``:
    the views' last-stage maps concatenated (missing views zeroed) and projected back.
    """

    def __init__(
        self,
        n_views: int,
        in_chans: int,
        shared_encoder: bool = True,
        pooling: str = "mean",
        **encoder_args,
    ):
        super().__init__()
        if pooling not in ("mean", "concat"):
            raise ValueError(f"late fusion pooling must be 'mean' or 'concat', not {pooling!r}")
        self.views = _PerViewEncoders(n_views, shared_encoder, in_chans=in_chans, **encoder_args)
        self.channels, self.reductions = self.views.channels, self.views.reductions
        self.pooling = pooling
        last = self.channels[-1]
        self.project = nn.Conv2d(n_views * last, last, 1) if pooling == "concat" else None

    def forward(self, images: torch.Tensor, view_mask: torch.Tensor):
        levels = self.views(images)
        fused = [masked_mean(level, view_mask) for level in levels[:-1]]
        last = levels[-1]
        if self.project is None:
            fused.append(masked_mean(last, view_mask))
        else:
            zeroed = last * view_mask.to(last.dtype).view(*view_mask.shape, 1, 1, 1)
            fused.append(self.project(zeroed.flatten(1, 2)))
        return fused, None


@register_fusion("cross_attention")
class CrossAttentionFusion(nn.Module):
    """Last-stage tokens of each view attend to the tokens of the other present views.

    The attention weights of the last forward pass are kept in ``last_attention``
    (B, heads, V*T, V*T) for visualisation; tokens of missing views are never attended to.
    """

    def __init__(
        self,
        n_views: int,
        in_chans: int,
        shared_encoder: bool = True,
        heads: int = 4,
        **encoder_args,
    ):
        super().__init__()
        self.views = _PerViewEncoders(n_views, shared_encoder, in_chans=in_chans, **encoder_args)
        self.channels, self.reductions = self.views.channels, self.views.reductions
        dim = self.channels[-1]
        heads = heads if dim % heads == 0 else 1
        self.view_embedding = nn.Parameter(torch.zeros(n_views, dim))
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.last_attention: torch.Tensor | None = None

    def forward(self, images: torch.Tensor, view_mask: torch.Tensor):
        levels = self.views(images)
        last = levels[-1]  # (B, V, D, h, w)
        b, v, d, h, w = last.shape
        tokens = last.flatten(3).transpose(2, 3) + self.view_embedding.view(1, v, 1, d)
        tokens = tokens.reshape(b, v * h * w, d)
        token_view = torch.arange(v, device=images.device).repeat_interleave(h * w)
        # A token attends to tokens of *other*, present views (its own view via the residual).
        same_view = token_view[:, None] == token_view[None, :]
        blocked = same_view.unsqueeze(0) | ~view_mask[:, token_view].unsqueeze(1)
        lonely = blocked.all(-1, keepdim=True)  # single present view: attend to itself
        blocked = blocked & ~(lonely & same_view.unsqueeze(0))
        attn_mask = torch.zeros(blocked.shape, dtype=tokens.dtype, device=tokens.device)
        attn_mask = attn_mask.masked_fill(blocked, float("-inf"))
        heads = self.attention.num_heads
        attended, weights = self.attention(
            tokens,
            tokens,
            tokens,
            attn_mask=attn_mask.repeat_interleave(heads, 0),
            need_weights=True,
            average_attn_weights=False,
        )
        self.last_attention = weights.detach()
        out = (
            self.norm(tokens + attended).view(b, v, h * w, d).transpose(2, 3).reshape(b, v, d, h, w)
        )
        fused = [masked_mean(level, view_mask) for level in levels[:-1]]
        fused.append(masked_mean(out, view_mask))
        return fused, self.last_attention


@register_fusion("multiscale")
class MultiScaleFusion(nn.Module):
    """Per-view features fused at every stage by a learned, presence-aware 1x1 convolution."""

    def __init__(self, n_views: int, in_chans: int, shared_encoder: bool = True, **encoder_args):
        super().__init__()
        self.views = _PerViewEncoders(n_views, shared_encoder, in_chans=in_chans, **encoder_args)
        self.channels, self.reductions = self.views.channels, self.views.reductions
        self.mix = nn.ModuleList(nn.Conv2d(n_views * c + n_views, c, 1) for c in self.channels)

    def forward(self, images: torch.Tensor, view_mask: torch.Tensor):
        fused = []
        for level, mix in zip(self.views(images), self.mix, strict=True):
            b, v, c, h, w = level.shape
            presence = view_mask.to(level.dtype).view(b, v, 1, 1, 1)
            zeroed = (level * presence).flatten(1, 2)
            flags = presence.view(b, v, 1, 1).expand(b, v, h, w)
            fused.append(mix(torch.cat([zeroed, flags], dim=1)) + masked_mean(level, view_mask))
        return fused, None
