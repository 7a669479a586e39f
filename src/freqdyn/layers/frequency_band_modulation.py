"""Frequency Band Modulation (FBM, FDConv §3.3): split a feature map into frequency bands and re-weight each
band with a spatially varying attention map.

Band j lies between the low-pass cut-offs c_{j-1} > c_j, with c_j = 0.5 / k_j cycles per pixel and the
(L-infinity) box mask max(|fy|, |fx|) < c_j of the official code, evaluated exactly at the input size (the
official layer resizes a mask built at 64x64, which misplaces a few cells at other sizes). With L_0 = x and
L_j the low-passed map, the output is sum_j a_j * (L_{j-1} - L_j) + L_last, which telescopes to x when every
a_j = 1 (the zero-initialised state).

The box mask is separable, so each low-pass is the projection U_h U_h^T x U_w U_w^T onto a real orthonormal
Fourier basis of the kept frequencies. That costs a few small matmuls instead of one FFT per band, is exact
for any H, W, works in any dtype and device, and exports to ONNX without FFT operators.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ._checks import compute_dtype
from .kernel_spatial_modulation import check_activation, modulation


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


class FrequencyBandModulation(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): spatially adaptive re-weighting of ``len(k_list) + 1`` frequency bands.

    Args:
        in_channels: C.
        k_list: band cut-offs 0.5 / k cycles per pixel, from the widest low-pass to the narrowest.
        act: ``'sigmoid'`` (2 * sigmoid) or ``'tanh'`` (1 + tanh) for the attention maps.
        spatial_group: G attention maps per band, each shared by C / G channels (> 64 means G = C, as
            in the official code).
        spatial_kernel: kernel size of the depthwise-grouped convs that predict the attention maps.
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
        groups = in_channels if spatial_group > 64 else spatial_group
        if groups < 1 or in_channels % groups:
            raise ValueError(f"fbm spatial_group={spatial_group} must divide in_channels={in_channels}")
        self.in_channels, self.k_list, self.act, self.spatial_group = in_channels, tuple(k_list), act, groups
        self.freq_weight_conv_list = nn.ModuleList(
            nn.Conv2d(in_channels, groups, spatial_kernel, padding=spatial_kernel // 2, groups=groups,
                      device=device, dtype=dtype)
            for _ in k_list
        )
        self._bases: dict[tuple, tuple[Tensor, list[int], Tensor, list[int]]] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.freq_weight_conv_list:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def _basis(self, height: int, width: int, dtype: torch.dtype, device: torch.device):
        key = (height, width, dtype, device)
        if key not in self._bases:
            cutoffs = [0.5 / k for k in self.k_list]
            self._bases[key] = (*lowpass_basis(height, cutoffs, dtype, device),
                                *lowpass_basis(width, cutoffs, dtype, device))
        return self._bases[key]

    def low_passes(self, x: Tensor) -> list[Tensor]:
        """Low-passed copies of x (B, C, H, W), one per cut-off, widest first, in x's dtype."""
        batch, channels, height, width = x.shape
        work = compute_dtype(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            uh, rh, uw, rw = self._basis(height, width, work, x.device)
            # two plain 2-D GEMMs per transform: rows of x against uw, then columns against uh
            t = x.to(work).reshape(-1, width) @ uw  # (B*C*H, Rw)
            coeffs = (t.reshape(-1, height, uw.shape[1]).transpose(1, 2).reshape(-1, height) @ uh)
            coeffs = coeffs.reshape(-1, uw.shape[1], uh.shape[1])  # (B*C, Rw, Rh)
            lows = []
            for h, w in zip(rh, rw):
                t = coeffs[:, :w, :h].reshape(-1, h) @ uh[:, :h].t()  # (B*C*w, H)
                t = t.reshape(-1, w, height).transpose(1, 2).reshape(-1, w) @ uw[:, :w].t()
                lows.append(t.reshape(batch, channels, height, width).to(x.dtype))
            return lows

    def attention(self, x: Tensor) -> Tensor:
        """Band attention maps (B, G, n_bands, H, W); the per-band convs run as one grouped conv."""
        convs = self.freq_weight_conv_list
        g, n = self.spatial_group, len(convs)
        weight = torch.stack([c.weight for c in convs], dim=1).reshape(g * n, *convs[0].weight.shape[1:])
        bias = torch.stack([c.bias for c in convs], dim=1).reshape(g * n)
        logits = F.conv2d(x, weight, bias, padding=convs[0].padding, groups=g)
        return modulation(logits, self.act, 2.0).reshape(x.shape[0], g, n, *x.shape[2:])

    def forward(self, x: Tensor) -> Tensor:
        # sum_j a_j (L_{j-1} - L_j) + L_n  ==  a_1 x + sum_{j<n} (a_{j+1} - a_j) L_j + (1 - a_n) L_n
        batch, channels, height, width = x.shape
        g = self.spatial_group
        att = self.attention(x).to(x.dtype)
        coef = torch.cat([att[:, :, :1], att[:, :, 1:] - att[:, :, :-1], 1 - att[:, :, -1:]], dim=2)
        coef = coef[:, :, :, None]  # (B, G, n + 1, 1, H, W), broadcast over the C / G channels of a group
        grouped = (batch, g, channels // g, height, width)
        out = x.reshape(grouped) * coef[:, :, 0]
        for j, low in enumerate(self.low_passes(x), start=1):
            out = torch.addcmul(out, coef[:, :, j], low.reshape(grouped))
        return out.reshape(batch, channels, height, width)
