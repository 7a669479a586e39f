"""MRFA: UniConvNet's multi-stage receptive field aggregator (UniConvNet, ICCV 2025).

The channels are split into four quarters. Stage i (kernels 7, 9, 11) turns the running context of
width (i + 1) * C / 4 into a large-kernel context, gates it ("amplifier"), and injects it as a residual
into the next quarter after that quarter's local 1x1 + 3x3 processing ("discriminator"); the running
width grows C/4 -> C/2 -> 3C/4 -> C, so the receptive field grows 7 -> 15 -> 25 pixels while every
stage keeps the pixels near the centre the most influential.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from ._checks import check_feature_map
from .layer_norm2d import LayerNorm2d


class AggregationStage(nn.Module):
    """One MRFA stage: context (B, width, H, W) and the next quarter (B, C/4, H, W) -> (B, width + C/4, H, W)."""

    def __init__(self, width: int, quarter: int, kernel_size: int, normalise: bool, **kw) -> None:
        super().__init__()
        self.norm = LayerNorm2d(width, eps=1e-6, **kw) if normalise else nn.Identity()
        self.context = nn.Sequential(
            nn.Conv2d(width, width, 1, **kw), nn.GELU(),
            nn.Conv2d(width, width, kernel_size, padding=kernel_size // 2, groups=width, **kw),
        )
        self.gate = nn.Conv2d(width, width, 1, **kw)
        self.proj = nn.Conv2d(width, width, 1, **kw)
        self.prep = nn.Conv2d(quarter, quarter, 1, **kw)
        self.refine = nn.Conv2d(quarter, quarter, 3, padding=1, groups=quarter, **kw)
        self.inject = nn.Conv2d(width, quarter, 1, **kw) if width != quarter else nn.Identity()

    def forward(self, context: Tensor, quarter: Tensor) -> Tensor:
        context = self.norm(context)
        ctx = self.context(context)
        gated = self.proj(ctx * self.gate(context))
        local = self.refine(self.prep(quarter)) + self.inject(ctx)
        return torch.cat((local, gated), dim=1)


class MRFA(nn.Module):
    """Multi-stage receptive field aggregator: x (B, dim, H, W) -> (B, dim, H, W); ``dim`` divisible by 4.

    LayerNorm over the channels, split into four quarters, then three :class:`AggregationStage` with
    depthwise kernels ``kernel_sizes`` (7, 9, 11); stages 2 and 3 normalise their running context first.
    """

    def __init__(
        self,
        dim: int,
        kernel_sizes: tuple[int, int, int] = (7, 9, 11),
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if dim < 4 or dim % 4:
            raise ValueError(f"MRFA splits the channels into 4 quarters: dim must be a positive multiple of 4, got {dim}")
        if len(kernel_sizes) != 3 or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be three odd positive ints, got {kernel_sizes}")
        kw = {"device": device, "dtype": dtype}
        self.dim, self.kernel_sizes = dim, tuple(kernel_sizes)
        quarter = dim // 4
        self.norm = LayerNorm2d(dim, eps=1e-6, **kw)
        self.stages = nn.ModuleList(
            AggregationStage((i + 1) * quarter, quarter, k, normalise=i > 0, **kw) for i, k in enumerate(kernel_sizes)
        )

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Outputs of the three stages: (B, dim/2, H, W), (B, 3 dim/4, H, W), (B, dim, H, W)."""
        check_feature_map(x, self.dim, type(self).__name__)
        quarters = torch.chunk(self.norm(x), 4, dim=1)
        context, outputs = quarters[0], []
        for stage, quarter in zip(self.stages, quarters[1:]):
            context = stage(context, quarter)
            outputs.append(context)
        return outputs

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_stages(x)[-1]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_sizes={self.kernel_sizes}"
