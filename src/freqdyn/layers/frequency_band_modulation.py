"""Frequency Band Modulation (FBM, FDConv §3.3): split a feature map into frequency bands and re-weight each
band with a spatially varying attention map.

Band j lies between two box low-passes on the ``rfft2`` grid of the input, cut-offs c_j = 0.5 / k_j cycles
per pixel, widest first. With L_0 = x and L_j the low-passed map, the output is
sum_j a_j * (L_{j-1} - L_j) + L_last, which telescopes to x when every a_j = 1 (the zero-initialised state).

Two mask rules (``masks``):

* ``'official'`` (default; the authors' code, so their checkpoints compute their function): masks
  max(|fy|, |fx|) < 0.5 / k + 1e-8 are evaluated in float32 on a 64 x 64 grid (rfft grid 64 x 33), so the
  k = 2 edge |f| = 0.25 is excluded (0.25 + 1e-8 rounds to 0.25) while the 0.125 and 0.0625 edges are
  included, and nearest-resized (``F.interpolate``) to the input's (H, W // 2 + 1) grid at run time.
* ``'exact'``: the same box built at the input size in float64, every edge included.

Either mask is a product R_j(fy) C_j(fx) of a row mask and a column mask; the column mask keeps a prefix of
the rfft frequencies. The low-pass is then linear and separable: along W, the kept columns span a real
orthonormal Fourier basis V_j (DC, cos 1, sin 1, ...), and along H the mask gives the complex circulant
A_j = F^-1 diag(R_j) F. A resized official row mask need not be symmetric in +-f, so A_j need not be real:
with A_j = Re A_j + i Im A_j, and since the inverse real FFT along W is real-linear,

    L_j = Re(A_j) x Q_j + Im(A_j) x S_j,   Q_j: v -> irfft(C_j rfft(v)),   S_j: v -> irfft(C_j i rfft(v)),

where S_j = V_j J_j V_j^T, J_j the quarter turn (cos i -> -sin i, sin i -> cos i) that vanishes at DC and
Nyquist (the imaginary parts the inverse FFT discards there). With one attention group the forward pass
never builds the low-passed maps: with c_j the coefficient of L_j, row h of sum_j c_j * L_j is
sum_j (T_j[h]) (V_j^T * c_j[h]) with T_j = Re(A_j) (x V_j) + Im(A_j) (x V_j J_j^T), a batched matmul over
the rows per band, accumulated in place (with several groups each L_j is built and weighted). The work
runs channels-last, where both transforms are matmuls over pixel rows. This equals the FFT definition for
any H, W, works in any dtype and device, and exports to ONNX without FFT operators.
"""
from __future__ import annotations

import contextlib
import functools
import math
import struct
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ._checks import compute_dtype, memory_format_of
from .attention_conv import AttentionConv
from .kernel_spatial_modulation import check_activation, modulation
from .trace_only import TraceOnly

_GEMM_MIN_GROUP_CHANNELS = 8
MASK_RULES = ("official", "exact")
OFFICIAL_MASK_GRID = 64


def _f32(value: float) -> float:
    """``value`` rounded to the nearest float32."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _nearest_source(dst: int, size_in: int, size_out: int) -> int:
    """Source index of ``F.interpolate(mode='nearest')``: min(floor(dst * float32(in / out)), in - 1) in float32."""
    if size_in == size_out:
        return dst
    return min(math.floor(_f32(dst * _f32(size_in / size_out))), size_in - 1)


def _mask_lists(height: int, width: int, k_list: tuple[int, ...], rule: str) -> tuple[list[list[bool]], list[list[bool]]]:
    n_cols = width // 2 + 1
    rows, cols = [], []
    for k in k_list:
        if rule == "exact":
            limit = 0.5 / k + 1e-8
            rows.append([min(r, height - r) / height < limit for r in range(height)])
            cols.append([c / width < limit for c in range(n_cols)])
            continue
        n = OFFICIAL_MASK_GRID  # |fftfreq(64)| and rfftfreq(64) are exact in float32, the threshold is not
        limit = _f32(0.5 / k + 1e-8)
        grid_rows = [min(r, n - r) / n < limit for r in range(n)]
        grid_cols = [c / n < limit for c in range(n // 2 + 1)]
        rows.append([grid_rows[_nearest_source(r, n, height)] for r in range(height)])
        cols.append([grid_cols[_nearest_source(c, n // 2 + 1, n_cols)] for c in range(n_cols)])
    return rows, cols


def band_masks(height: int, width: int, k_list: tuple[int, ...], rule: str = "official") -> tuple[Tensor, Tensor]:
    """Row masks (n, H) and column masks (n, W // 2 + 1), bool, of the box low-passes on x's rfft2 grid.

    Mask j keeps coefficient (r, c) of ``rfft2(x)`` iff ``rows[j, r] & cols[j, c]``. Computed in plain
    Python (float32 arithmetic emulated by rounding), so it costs nothing to trace or compile.
    """
    if rule not in MASK_RULES:
        raise ValueError(f"fbm_masks must be one of {MASK_RULES}, got {rule!r}")
    rows, cols = _mask_lists(height, width, k_list, rule)
    return torch.tensor(rows, dtype=torch.bool), torch.tensor(cols, dtype=torch.bool)


def real_fourier_basis(size: int, kept: int) -> np.ndarray:
    """(size, r) float64 orthonormal basis of the real signals whose rfft is zero beyond index ``kept - 1``.

    Columns DC, cos 1, sin 1, cos 2, ... (a single cos at Nyquist), so a smaller ``kept`` gives a prefix.
    """
    n = np.arange(size, dtype=np.float64)
    columns = [np.full(size, 1.0 / math.sqrt(size))]
    for i in range(1, kept):
        if 2 * i == size:
            columns.append(np.cos(math.pi * n) / math.sqrt(size))
        else:
            angle = 2.0 * math.pi * i * n / size
            columns += [np.cos(angle) * math.sqrt(2.0 / size), np.sin(angle) * math.sqrt(2.0 / size)]
    return np.stack(columns, axis=1)


class BandPlan(NamedTuple):
    """Input-size-dependent constants of :class:`FrequencyBandModulation`, one entry per cut-off j."""

    proj_h: tuple[Tensor, ...]  # Re(A_j) (H, H)
    quad_h: tuple[Tensor | None, ...]  # Im(A_j) (H, H); None for a row mask symmetric in +-f
    turn_w: tuple[Tensor | None, ...]  # J_j (w_j, w_j), with quad_h[j]
    basis_w: Tensor  # (W, Rw): basis of the widest band along W; band j uses its first widths[j] columns
    widths: tuple[int, ...]


@torch.compiler.assume_constant_result
def band_plan(height: int, width: int, k_list: tuple[int, ...], rule: str, dtype: torch.dtype,
              device: torch.device) -> BandPlan:
    """Operators of the low-passes at size (height, width) in ``dtype`` on ``device``.

    They depend on the size only, never on weights, so they cannot go stale: they are built once per size
    in float64 with numpy and kept in bounded caches (constants to ``torch.jit.trace`` and ``torch.compile``;
    while tracing or exporting they are converted afresh, so no traced tensor is ever cached).
    """
    key = (int(height), int(width), tuple(k_list), rule)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return _as_tensors(_band_arrays(*key), dtype, torch.device(device))
    return _band_tensors(*key, dtype, torch.device(device))


@functools.lru_cache(maxsize=32)
def _band_tensors(height: int, width: int, k_list: tuple[int, ...], rule: str, dtype: torch.dtype,
                  device: torch.device) -> BandPlan:
    building = torch.inference_mode(False) if torch.is_inference_mode_enabled() else contextlib.nullcontext()
    with building:  # normal tensors, so that a later training forward can save them for backward
        return _as_tensors(_band_arrays(height, width, k_list, rule), dtype, device)


def _as_tensors(arrays: BandPlan, dtype: torch.dtype, device: torch.device) -> BandPlan:
    def tensor(a: np.ndarray | None) -> Tensor | None:
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    return BandPlan(tuple(tensor(p) for p in arrays.proj_h), tuple(tensor(q) for q in arrays.quad_h),
                    tuple(tensor(t) for t in arrays.turn_w), tensor(arrays.basis_w), arrays.widths)


@functools.lru_cache(maxsize=32)
def _band_arrays(height: int, width: int, k_list: tuple[int, ...], rule: str) -> BandPlan:
    """The :class:`BandPlan` as float64 numpy arrays."""
    rows, cols = _mask_lists(height, width, k_list, rule)
    kept = [sum(c) for c in cols]
    if any(not all(c[:n]) for c, n in zip(cols, kept)):
        raise AssertionError("FBM column masks must keep a prefix of the rfft frequencies")
    basis = real_fourier_basis(width, max(kept))
    widths = tuple(basis.shape[1] - sum(2 if 2 * i != width else 1 for i in range(n, max(kept))) for n in kept)
    spectra = np.fft.fft(np.eye(height), axis=0, norm="ortho")
    proj, quad, turn = [], [], []
    for row, w, n in zip(rows, widths, kept):
        circulant = np.fft.ifft(np.asarray(row, dtype=np.float64)[:, None] * spectra, axis=0, norm="ortho")
        proj.append(circulant.real)
        if row == [row[-r] for r in range(height)]:  # symmetric in +-f: A_j is real
            quad.append(None)
            turn.append(None)
            continue
        quad.append(circulant.imag)
        v = basis[:, :w]
        keep = (np.arange(width // 2 + 1) < n)[:, None]
        quarter = np.fft.irfft(1j * keep * np.fft.rfft(v, axis=0), n=width, axis=0)
        turn.append(np.round(v.T @ quarter))
    return BandPlan(tuple(proj), tuple(quad), tuple(turn), basis, widths)


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


class FrequencyBandModulation(TraceOnly, nn.Module):
    """(B, C, H, W) -> (B, C, H, W): spatially adaptive re-weighting of ``len(k_list) + 1`` frequency bands.

    Args:
        in_channels: C.
        k_list: band cut-offs 0.5 / k cycles per pixel, from the widest low-pass to the narrowest.
        act: ``'sigmoid'`` (2 * sigmoid) or ``'tanh'`` (1 + tanh) for the attention maps.
        spatial_group: G attention maps per band, each shared by C / G channels (> 64 means G = C, as
            in the official code).
        spatial_kernel: odd kernel size of the grouped convs that predict the attention maps.
        masks: ``'official'`` (default) or ``'exact'`` band masks (see the module docstring).
    """

    def __init__(
        self,
        in_channels: int,
        k_list: tuple[int, ...] = (2, 4, 8),
        act: str = "sigmoid",
        spatial_group: int = 1,
        spatial_kernel: int = 3,
        masks: str = "official",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_activation(act, "fbm_act")
        if not k_list or any(k < 1 for k in k_list) or list(k_list) != sorted(k_list):
            raise ValueError(f"fbm k_list must be a non-empty increasing list of ints >= 1, got {k_list!r}")
        if spatial_kernel < 1 or spatial_kernel % 2 == 0:
            raise ValueError(f"fbm spatial_kernel must be a positive odd int, got {spatial_kernel}")
        if masks not in MASK_RULES:
            raise ValueError(f"fbm_masks must be one of {MASK_RULES}, got {masks!r}")
        groups = in_channels if spatial_group > 64 else spatial_group
        if groups < 1 or in_channels % groups:
            raise ValueError(f"fbm spatial_group={spatial_group} must divide in_channels={in_channels}")
        self.in_channels, self.k_list, self.act, self.spatial_group = in_channels, tuple(k_list), act, groups
        self.masks = masks
        self.freq_weight_conv_list = nn.ModuleList(
            AttentionConv(in_channels, groups, spatial_kernel, padding=spatial_kernel // 2, groups=groups,
                          device=device, dtype=dtype)
            for _ in k_list
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.freq_weight_conv_list:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def _plan(self, height: int, width: int, dtype: torch.dtype, device: torch.device) -> BandPlan:
        return band_plan(height, width, self.k_list, self.masks, dtype, device)

    @staticmethod
    def _filter_rows(plan: BandPlan, rows: Tensor) -> list[Tensor]:
        """T_j = Re(A_j) (x V_j) + Im(A_j) (x V_j J_j^T) from rows = x V (B, H, Rw, C): (B, H, w_j, C) per band."""
        batch, height, _, channels = rows.shape
        out = []
        for proj, quad, turn, w in zip(plan.proj_h, plan.quad_h, plan.turn_w, plan.widths):
            part = rows[:, :, :w]
            t = torch.matmul(proj, part.reshape(batch, height, w * channels))
            if quad is not None:
                t = t + torch.matmul(quad, torch.matmul(turn, part).reshape(batch, height, w * channels))
            out.append(t.reshape(batch, height, w, channels))
        return out

    def low_passes(self, x: Tensor) -> list[Tensor]:
        """Low-passed copies of x (B, C, H, W), one per cut-off, widest first, in x's dtype."""
        batch, channels, height, width = x.shape
        work = compute_dtype(x.dtype)
        with torch.autocast(x.device.type, enabled=False):
            plan = self._plan(height, width, work, x.device)
            rows = (x.to(work).transpose(1, 2) @ plan.basis_w).transpose(2, 3)  # x V: (B, H, Rw, C)
            parts = self._filter_rows(plan, rows)
            return [(plan.basis_w[:, :w] @ part).permute(0, 3, 1, 2).to(x.dtype)
                    for part, w in zip(parts, plan.widths)]

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
            proj = self._filter_rows(plan, rows)  # T_j: (B, H, w_j, C)
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
