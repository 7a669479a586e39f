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
from torch import Tensor

from ._checks import compute_dtype
from .kernel_spatial_modulation import ACTIVATIONS, modulation


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
        if act not in ACTIVATIONS:
            raise ValueError(f"fbm_act must be one of {ACTIVATIONS}, got {act!r}")
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
        work = compute_dtype(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            xf = x.to(work)
            uh, rh, uw, rw = self._basis(x.shape[-2], x.shape[-1], work, x.device)
            coeffs = uh.t() @ xf @ uw  # (B, C, Rh, Rw)
            return [(uh[:, :h] @ coeffs[..., :h, :w] @ uw[:, :w].t()).to(x.dtype) for h, w in zip(rh, rw)]

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        g = self.spatial_group
        grouped = (batch, g, channels // g, height, width)
        previous = x.reshape(grouped)
        out = None
        for conv, low in zip(self.freq_weight_conv_list, self.low_passes(x)):
            att = modulation(conv(x), self.act, 2.0).reshape(batch, g, 1, height, width)
            low = low.reshape(grouped)
            band = att * (previous - low)
            out = band if out is None else out + band
            previous = low
        return (out + previous).reshape(batch, channels, height, width)
