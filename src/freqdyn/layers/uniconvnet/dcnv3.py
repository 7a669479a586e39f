"""DCNv3 (InternImage, CVPR 2023) in pure PyTorch, as UniConvNet's blocks use it (ICCV 2025).

Each of G channel groups samples its value map at P = k * k points per output pixel: the regular k x k grid
(dilated, strided) moved by a learned offset per point, read by bilinear interpolation (zero outside), and sums
them weighted by a learned per-point modulation. Offsets and modulations are linear maps of a depthwise-convolved
input; the value map and the output go through linear projections.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._common.checks import check_int, check_positive
from .._common.device_dtype import factory_kwargs
from .._common.flop_record import record_flops

BASE_GRIDS = ("official", "exact")


def _base_locations(
    out_hw: tuple[int, int],
    padded_hw: tuple[int, int],
    kernel: int,
    stride: int,
    dilation: int,
    offset_scale: float,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """Regular sampling points (H', W', P, 2) as (x, y) fractions of the padded map, points x-major.

    Output pixel (i, j) and kernel point (a, b) sit at ((c + j * stride + (b - r) * dilation) / W_p, (c + i * stride +
    (a - r) * dilation) / H_p) with r = k // 2, c = dilation * (k - 1) // 2 + 0.5 (pixel centres), as InternImage's
    ``dcnv3_core_pytorch`` builds them.
    """
    (out_h, out_w), (padded_h, padded_w) = out_hw, padded_hw
    start = dilation * (kernel - 1) // 2 + 0.5
    ys = torch.linspace(start, start + (out_h - 1) * stride, out_h, dtype=dtype, device=device) / padded_h
    xs = torch.linspace(start, start + (out_w - 1) * stride, out_w, dtype=dtype, device=device) / padded_w
    reach = dilation * (kernel - 1) // 2
    taps = torch.linspace(-reach, -reach + (kernel - 1) * dilation, kernel, dtype=dtype, device=device)
    tap_x = (taps / padded_w).repeat_interleave(kernel)  # point p = a * k + b: x from a (outer), y from b (inner)
    tap_y = (taps / padded_h).repeat(kernel)
    x = xs[None, :, None] + tap_x[None, None, :] * offset_scale
    y = ys[:, None, None] + tap_y[None, None, :] * offset_scale
    return torch.stack(torch.broadcast_tensors(x, y), dim=-1)


def dcnv3_sample(
    value: Tensor,
    offset: Tensor,
    mask: Tensor,
    kernel: int,
    stride: int,
    pad: int,
    dilation: int,
    group: int,
    offset_scale: float = 1.0,
    base_grid: str = "official",
) -> Tensor:
    """The DCNv3 core: value (B, H, W, C) channels-last, offset (B, H', W', G * P * 2) as (x, y) pixel shifts per
    group and point, mask (B, H', W', G * P) -> (B, H', W', C), P = kernel ** 2.

    ``base_grid='official'`` computes the regular points in float32 before adding the offsets, as the authors'
    code does for any dtype (a float64 model's points carry float32 rounding: 1e-5 relative at the logits of a
    whole UniConvNet); ``'exact'`` computes them in the value's dtype.
    """
    batch, height, width, channels = value.shape
    padded = F.pad(value, (0, 0, pad, pad, pad, pad))
    padded_h, padded_w = height + 2 * pad, width + 2 * pad
    out_h, out_w = offset.shape[1:3]
    points = kernel * kernel
    base_dtype = torch.float32 if base_grid == "official" else value.dtype
    base = _base_locations(
        (out_h, out_w), (padded_h, padded_w), kernel, stride, dilation, offset_scale, base_dtype, value.device
    ).to(value.dtype)
    norm = torch.tensor([padded_w, padded_h], dtype=value.dtype, device=value.device)
    shifts = offset.reshape(batch, out_h, out_w, group, points, 2) * offset_scale / norm
    grid = 2 * (base[:, :, None] + shifts) - 1  # (B, H', W', G, P, 2) in grid_sample's [-1, 1]
    grid = grid.permute(0, 3, 1, 2, 4, 5).reshape(batch * group, out_h * out_w, points, 2)
    per_group = channels // group
    source = padded.reshape(batch, padded_h * padded_w, group, per_group).permute(0, 2, 3, 1)
    source = source.reshape(batch * group, per_group, padded_h, padded_w)
    taps = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    weights = mask.reshape(batch, out_h * out_w, group, points).permute(0, 2, 1, 3)
    out = (taps * weights.reshape(batch * group, 1, out_h * out_w, points)).sum(-1)  # (B * G, C / G, H' * W')
    record_flops(2 * 5 * batch * out_h * out_w * channels * points)  # 4 bilinear taps + the modulation, per point
    return out.reshape(batch, channels, out_h * out_w).transpose(1, 2).reshape(batch, out_h, out_w, channels)


class DCNv3(nn.Module):
    """x (B, H, W, C) channels-last -> (B, H, W, C): DCNv3 as UniConvNet's blocks build it.

    ``value = input_proj(x)``; offsets (``offset``) and modulations (``mask``) are linear maps of a k x k depthwise
    conv of x (``dw_conv.0``, with bias, no norm or activation) used raw (UniConvNet's; InternImage's DCNv3 adds a
    LayerNorm and GELU there and a softmax over each group's points); the sampled sum goes through ``output_proj``.
    State dict keys are the authors' (``dw_conv.0``, ``offset``, ``mask``, ``input_proj``, ``output_proj``).

    Args:
        channels: C (divisible by ``group``).
        kernel_size, pad, dilation: the sampling grid (k x k points per group, stride 1; the offsets come from a
            stride-1 depthwise conv, so the output keeps the input's size).
        group: G, channel groups with their own offsets and modulations.
        offset_scale: multiplier of the offsets (and of the grid's spread, as in the authors' code).
        base_grid: ``'official'`` (float32 regular points, as the authors' code) or ``'exact'`` (:func:`dcnv3_sample`).

    Shape:
        - Input: (B, H, W, C), channels-last.
        - Output: (B, H, W, C).

    Differs from the authors' (docs/uniconvnet.md): in nothing it computes by default; ``base_grid='exact'`` builds
    the sampling grid in the model's dtype where theirs (``'official'``) is float32.

    Examples:
        >>> DCNv3(32, group=4)(torch.randn(1, 14, 14, 32)).shape  # channels last, as InternImage
        torch.Size([1, 14, 14, 32])
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        pad: int = 1,
        dilation: int = 1,
        group: int = 4,
        offset_scale: float = 1.0,
        base_grid: str = "official",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = factory_kwargs(device, dtype)
        channels, group = check_int(channels, "channels"), check_int(group, "group")
        if channels % group:
            raise ValueError(f"channels ({channels}) must be divisible by group ({group})")
        if base_grid not in BASE_GRIDS:
            raise ValueError(f"base_grid must be one of {BASE_GRIDS}, got {base_grid!r}")
        self.channels, self.group = channels, group
        self.kernel_size, self.dilation = check_int(kernel_size, "kernel_size"), check_int(dilation, "dilation")
        self.pad = check_int(pad, "pad", 0)
        if 2 * self.pad != self.dilation * (self.kernel_size - 1):
            raise ValueError(
                f"pad must keep the size: 2 * pad == dilation * (kernel_size - 1), got pad={pad}, "
                f"kernel_size={kernel_size}, dilation={dilation}"
            )
        self.offset_scale, self.base_grid = check_positive(offset_scale, "offset_scale"), base_grid
        points = self.kernel_size**2
        k = self.kernel_size
        self.dw_conv = nn.Sequential(nn.Conv2d(channels, channels, k, padding=(k - 1) // 2, groups=channels, **kw))
        self.offset = nn.Linear(channels, group * points * 2, **kw)
        self.mask = nn.Linear(channels, group * points, **kw)
        self.input_proj = nn.Linear(channels, channels, **kw)
        self.output_proj = nn.Linear(channels, channels, **kw)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: offsets and modulations zero, projections Xavier-uniform with zero bias."""
        cast(nn.Conv2d, self.dw_conv[0]).reset_parameters()
        for linear in (self.offset, self.mask):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)
        for linear in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[-1] != self.channels:
            raise ValueError(f"DCNv3 expects a channels-last (B, H, W, {self.channels}) input, got {tuple(x.shape)}")
        value = self.input_proj(x)
        context = self.dw_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        out = dcnv3_sample(
            value,
            self.offset(context),
            self.mask(context),
            self.kernel_size,
            1,
            self.pad,
            self.dilation,
            self.group,
            self.offset_scale,
            self.base_grid,
        )
        return self.output_proj(out)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, kernel_size={self.kernel_size}, pad={self.pad}, "
            f"dilation={self.dilation}, group={self.group}, offset_scale={self.offset_scale}, "
            f"base_grid={self.base_grid!r}"
        )
