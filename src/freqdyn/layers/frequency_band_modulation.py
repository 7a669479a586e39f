"""Frequency Band Modulation (FBM, FDConv §3.3): split a feature map into frequency bands and re-weight each
band with a spatially varying attention map.

Band j lies between the low-pass cut-offs c_{j-1} > c_j, with c_j = 0.5 / k_j cycles per pixel and the
(L-infinity) box mask max(|fy|, |fx|) < c_j of the official code, evaluated exactly at the input size (the
official layer resizes a mask built at 64x64, which misplaces a few cells at other sizes). With L_0 = x and
L_j the low-passed map, the output is sum_j a_j * (L_{j-1} - L_j) + L_last, which telescopes to x when every
a_j = 1 (the zero-initialised state).

The box mask is separable, so each low-pass is the projection P_j x Q_j onto a real orthonormal Fourier basis
of the kept frequencies (P_j = U_j U_j^T along H, Q_j = V_j V_j^T along W). With one attention group the
forward pass never builds the low-passed maps: with c_j the coefficient of L_j, row h of sum_j c_j * L_j is
sum_j ((P_j x)[h] V_j) (V_j^T * c_j[h]), a batched matmul over the rows per band, accumulated in place (with
several groups each L_j is built and weighted). The work runs channels-last, where both transforms are
matmuls over pixel rows. This is exact for any H, W, works in any dtype and device, and exports to ONNX
without FFT operators.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ._checks import compute_dtype, memory_format_of
from .kernel_spatial_modulation import check_activation, modulation

_GEMM_MIN_GROUP_CHANNELS = 8


def lowpass_basis(size: int, cutoffs: list[float], dtype: torch.dtype, device: torch.device) -> tuple[Tensor, list[int]]:
    """Real orthonormal basis of the frequencies |f| < c (f = fftfreq(size)) for the widest cut-off.

    Columns are ordered by frequency (DC, cos 1, sin 1, cos 2, ...), so the basis of every narrower cut-off is
    a prefix. Returns the (size, r) basis and each cut-off's prefix length r_j.
    """
    n = torch.arange(size, dtype=torch.float64)
    columns = [torch.full((size,), 1.0 / math.sqrt(size), dtype=torch.float64)]
    counts = []
    widest = max(cutoffs)
    for i in range(1, size // 2 + 1):
        if i / size >= widest + 1e-8:
            break
        if 2 * i == size:
            columns.append(torch.cos(math.pi * n) / math.sqrt(size))
        else:
            angle = 2.0 * math.pi * i * n / size
            columns += [torch.cos(angle) * math.sqrt(2.0 / size), torch.sin(angle) * math.sqrt(2.0 / size)]
    for c in cutoffs:
        kept = [i for i in range(1, size // 2 + 1) if i / size < c + 1e-8]
        counts.append(1 + sum(1 if 2 * i == size else 2 for i in kept))
    return torch.stack(columns, dim=1).to(device=device, dtype=dtype), counts


class BandPlan(NamedTuple):
    """Input-size-dependent constants of :class:`FrequencyBandModulation`, one per cut-off j."""

    proj_h: tuple[Tensor, ...]  # P_j (H, H): projection onto the kept H-frequencies
    basis_w: Tensor  # (W, Rw): basis of the widest cut-off along W; band j uses its first widths[j] columns
    widths: tuple[int, ...]


def band_plan(height: int, width: int, cutoffs: list[float], dtype: torch.dtype, device: torch.device) -> BandPlan:
    """Projections and bases for low-passes with the given cut-offs at size (height, width), built in float64."""
    uh, heights = lowpass_basis(height, cutoffs, torch.float64, device)
    uw, widths = lowpass_basis(width, cutoffs, torch.float64, device)
    proj_h = tuple((uh[:, :h] @ uh[:, :h].t()).to(dtype) for h in heights)
    return BandPlan(proj_h, uw.to(dtype), tuple(widths))


def same_conv_as_gemm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Grouped 'same' convolution with few outputs per group as one matmul plus k*k shifted sums.

    x (B, H, W, G*Cg) channels-last, weight (G, M, Cg, k, k) with k odd, bias (G, M) -> (B, G, M, H, W).
    oneDNN is slow for convolutions with a handful of output channels; here the contraction over Cg is a
    single GEMM whose output keeps W innermost, so the shifted sums run over contiguous rows.
    """
    batch, height, width, _ = x.shape
    groups, outs, per_group, k, _ = weight.shape
    pad = k // 2
    mat = weight.permute(0, 3, 4, 1, 2).reshape(groups, k * k * outs, per_group)
    pixels = x.reshape(batch, height * width, groups, per_group).permute(0, 2, 3, 1)  # (B, G, Cg, H*W)
    taps = (mat @ pixels).reshape(batch, groups, k, k, outs, height, width)
    out = taps[:, :, pad, pad] + bias[None, :, :, None, None]
    for a in range(k):
        for b in range(k):
            dy, dx = a - pad, b - pad  # out[h, w] += taps[a, b, h + dy, w + dx] where that pixel exists
            if (dy, dx) == (0, 0) or abs(dy) >= height or abs(dx) >= width:
                continue
            out[..., max(-dy, 0):height - max(dy, 0), max(-dx, 0):width - max(dx, 0)] += taps[
                :, :, a, b, :, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)]
    return out


class FrequencyBandModulation(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): spatially adaptive re-weighting of ``len(k_list) + 1`` frequency bands.

    Args:
        in_channels: C.
        k_list: band cut-offs 0.5 / k cycles per pixel, from the widest low-pass to the narrowest.
        act: ``'sigmoid'`` (2 * sigmoid) or ``'tanh'`` (1 + tanh) for the attention maps.
        spatial_group: G attention maps per band, each shared by C / G channels (> 64 means G = C, as
            in the official code).
        spatial_kernel: odd kernel size of the grouped convs that predict the attention maps.
    """

    def __init__(
        self,
        in_channels: int,
        k_list: tuple[int, ...] = (2, 4, 8),
        act: str = "sigmoid",
        spatial_group: int = 1,
        spatial_kernel: int = 3,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_activation(act, "fbm_act")
        if not k_list or any(k < 1 for k in k_list) or list(k_list) != sorted(k_list):
            raise ValueError(f"fbm k_list must be a non-empty increasing list of ints >= 1, got {k_list!r}")
        if spatial_kernel < 1 or spatial_kernel % 2 == 0:
            raise ValueError(f"fbm spatial_kernel must be a positive odd int, got {spatial_kernel}")
        groups = in_channels if spatial_group > 64 else spatial_group
        if groups < 1 or in_channels % groups:
            raise ValueError(f"fbm spatial_group={spatial_group} must divide in_channels={in_channels}")
        self.in_channels, self.k_list, self.act, self.spatial_group = in_channels, tuple(k_list), act, groups
        self.freq_weight_conv_list = nn.ModuleList(
            nn.Conv2d(in_channels, groups, spatial_kernel, padding=spatial_kernel // 2, groups=groups,
                      device=device, dtype=dtype)
            for _ in k_list
        )
        self._plans: dict[tuple, BandPlan] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.freq_weight_conv_list:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def _plan(self, height: int, width: int, dtype: torch.dtype, device: torch.device) -> BandPlan:
        key = (height, width, dtype, device)
        if key not in self._plans:
            self._plans[key] = band_plan(height, width, [0.5 / k for k in self.k_list], dtype, device)
        return self._plans[key]

    def low_passes(self, x: Tensor) -> list[Tensor]:
        """Low-passed copies of x (B, C, H, W), one per cut-off, widest first, in x's dtype."""
        batch, channels, height, width = x.shape
        work = compute_dtype(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            plan = self._plan(height, width, work, x.device)
            rows = x.to(work).reshape(-1, width) @ plan.basis_w
            lows = []
            for proj, w in zip(plan.proj_h, plan.widths):
                filtered = (rows[:, :w] @ plan.basis_w[:, :w].t()).reshape(batch * channels, height, width)
                lows.append((proj @ filtered).reshape(batch, channels, height, width).to(x.dtype))
            return lows

    def attention(self, x: Tensor) -> Tensor:
        """Band attention maps (B, H, W, G, n_bands) from x (B, C, H, W), in x's dtype."""
        convs = self.freq_weight_conv_list
        g = self.spatial_group
        weight = torch.stack([c.weight for c in convs], dim=1).to(x.dtype)  # (G, n, C / G, k, k)
        bias = torch.stack([c.bias for c in convs], dim=1).to(x.dtype)  # (G, n)
        if self.in_channels // g >= _GEMM_MIN_GROUP_CHANNELS:
            logits = same_conv_as_gemm(x.permute(0, 2, 3, 1), weight, bias)
        else:
            logits = F.conv2d(x, weight.flatten(0, 1), bias.flatten(), padding=convs[0].padding, groups=g)
            logits = logits.reshape(x.shape[0], g, len(convs), *x.shape[2:])
        return modulation(logits.permute(0, 3, 4, 1, 2), self.act, 2.0)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W) in x's memory format.

        The work runs channels-last, where both separable transforms are plain matmuls over pixel rows.
        """
        # sum_j a_j (L_{j-1} - L_j) + L_n  ==  a_1 x + sum_{j<n} (a_{j+1} - a_j) L_j + (1 - a_n) L_n
        batch, channels, height, width = x.shape
        g = self.spatial_group
        per_group = channels // g
        work = compute_dtype(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            plan = self._plan(height, width, work, x.device)
            xl = x.to(work).permute(0, 2, 3, 1).contiguous()  # (B, H, W, C); no copy for channels_last x
            att = self.attention(xl.permute(0, 3, 1, 2))  # (B, H, W, G, n)
            coef = torch.cat([att[..., 1:] - att[..., :-1], 1 - att[..., -1:]], dim=-1)  # of L_1 .. L_n
            rows = torch.bmm(plan.basis_w.t().expand(batch * height, -1, -1), xl.reshape(batch * height, width, -1))
            rows = rows.reshape(batch, height, -1, channels)  # x V along W: (B, H, Rw, C)
            proj = [  # P_j x V_j: (B, H, w_j, C)
                torch.matmul(p, rows[:, :, :w].reshape(batch, height, w * channels)).reshape(batch, height, w, channels)
                for p, w in zip(plan.proj_h, plan.widths)
            ]
            if g == 1:
                # pixel (h, w) of sum_j c_j L_j = sum_j c_j[h, w] V_j[w] . (P_j x V_j)[h]: a matmul per row h
                bands = None
                for j, (part, w) in enumerate(zip(proj, plan.widths)):
                    synth = (coef[..., 0, j, None] * plan.basis_w[:, :w]).reshape(batch * height, width, w)
                    part = part.reshape(batch * height, w, channels)
                    bands = torch.bmm(synth, part) if bands is None else bands.baddbmm_(synth, part)
                bands = bands.reshape(batch, height, width, 1, channels)
            else:
                bands = sum(
                    (plan.basis_w[:, :w] @ part).reshape(batch, height, width, g, per_group) * coef[..., j, None]
                    for j, (part, w) in enumerate(zip(proj, plan.widths))
                )
            out = bands.addcmul_(xl.reshape(batch, height, width, g, per_group), att[..., :1])
            out = out.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        return out.to(x.dtype).contiguous(memory_format=memory_format_of(x))
