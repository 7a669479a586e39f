"""Fourier Disjoint Weights (FDW, FDConv §3.1): a kernel stored as the rfft2 of its (O*kh, I*kw) matrix.

A conv weight W (O, I, kh, kw) is laid out as the matrix M[o*kh + a, i*kw + b] = W[o, i, a, b] (the official
layout). Its ``rfft2`` coefficients are sorted by radial frequency and split into K disjoint groups; each group,
inverse-transformed alone, is one of the K frequency-diverse kernels that the kernel attention mixes.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from .._common.program_mode import exporting


def weight_to_matrix(weight: Tensor) -> Tensor:
    """(..., O, I, kh, kw) -> (..., O*kh, I*kw)."""
    *lead, o, i, kh, kw = weight.shape
    return weight.transpose(-3, -2).reshape(*lead, o * kh, i * kw)


def matrix_to_weight(matrix: Tensor, kernel_size: tuple[int, int]) -> Tensor:
    """(..., O*kh, I*kw) -> (..., O, I, kh, kw); inverse of :func:`weight_to_matrix`."""
    *lead, rows, cols = matrix.shape
    kh, kw = kernel_size
    return matrix.reshape(*lead, rows // kh, kh, cols // kw, kw).transpose(-3, -2)


@functools.lru_cache(maxsize=64)
def _inverse_dft(rows: int, cols: int) -> tuple[np.ndarray, ...]:
    r = np.arange(rows)
    angle = 2 * math.pi * np.outer(r, r) / rows
    k, c = np.arange(cols // 2 + 1), np.arange(cols)
    weight = np.where((k == 0) | (2 * k == cols), 1.0, 2.0)[:, None] / cols
    turn = 2 * math.pi * np.outer(k, c) / cols
    return np.cos(angle) / rows, np.sin(angle) / rows, weight * np.cos(turn), weight * np.sin(turn)


def inverse_spectrum(spectrum: Tensor, size: tuple[int, int]) -> Tensor:
    """``irfft2`` of a (..., rows, cols // 2 + 1, 2) real / imaginary spectrum -> (..., rows, cols) = ``size``.

    Eagerly aten's own c2r transform (``torch.fft.irfft2`` dispatches it under one more call). While tracing or
    exporting, the same transform as real matmuls with the inverse-DFT matrices (an inverse complex DFT along the
    rows, then the real inverse along the columns, which ignores the imaginary parts of the DC and Nyquist columns
    as the FFT does): ultralytics' ONNX export uses the TorchScript-based exporter, which has no FFT operators, and
    the graph then needs none.
    """
    rows, cols = size
    if not exporting():
        ends = [spectrum.dim() - 3, spectrum.dim() - 2]
        return torch._fft_c2r(torch.view_as_complex(spectrum.contiguous()), ends, 2, cols)  # 2: by 1 / n
    a_re, a_im, c_re, c_im = (
        torch.from_numpy(m).to(device=spectrum.device, dtype=spectrum.dtype) for m in _inverse_dft(rows, cols)
    )
    z_re, z_im = spectrum[..., 0], spectrum[..., 1]
    t_re = a_re @ z_re - a_im @ z_im
    t_im = a_re @ z_im + a_im @ z_re
    return t_re @ c_re - t_im @ c_im


def group_index_dtype(num_kernels: int) -> torch.dtype:
    """Smallest integer dtype that stores group ids 0..num_kernels-1 (checkpoints stay small)."""
    if num_kernels <= 256:
        return torch.uint8
    return torch.int16 if num_kernels <= 2**15 else torch.int32


GROUP_ORDERS = ("official", "stable")


def frequency_groups(rows: int, cols: int, num_kernels: int, order: str = "official") -> Tensor:
    """Assign every ``rfft2`` coefficient of a (rows, cols) matrix to one of ``num_kernels`` frequency groups.

    Coefficients are ordered by radial frequency sqrt(fy^2 + fx^2), with fy = fftfreq(rows) and
    fx = rfftfreq(cols) in cycles per sample along each axis, and sorted position r of n goes to group
    floor(r * K / n): contiguous, disjoint groups of near-equal size (exactly positions [g n/K, (g+1) n/K)
    when K divides n), group 0 holding the lowest frequencies. Two orders of equal radii exist:

    * ``'official'`` (the authors' code, so their checkpoints compute their function): the radius is the
      float32 L2 norm of the (fy, fx) pair on an 'ij' grid, sorted with torch's default (unstable) CPU
      sort. Coefficients of equal radius may then straddle a group boundary in an order that only that
      sort defines; the result is stored in the layer's ``freq_group`` buffer, so a saved layer reloads
      with exactly its groups on any platform.
    * ``'stable'``: the exact integer key (iy*cols)^2 + (ix*rows)^2 with a stable sort, so ties keep
      row-major order on every platform and torch version.

    Returns:
        (rows, cols // 2 + 1) tensor of group ids on the CPU, dtype from :func:`group_index_dtype`.
    """
    if order not in GROUP_ORDERS:
        raise ValueError(f"freq_grouping must be one of {GROUP_ORDERS}, got {order!r}")
    width = cols // 2 + 1
    total = rows * width
    if not 1 <= num_kernels <= total:
        raise ValueError(f"kernel_num={num_kernels} must lie in [1, {total}] for a {rows}x{cols} spectrum")
    if order == "official":
        fy = torch.fft.fftfreq(rows, dtype=torch.float32)
        fx = torch.fft.rfftfreq(cols, dtype=torch.float32)
        radius = torch.linalg.vector_norm(torch.stack(torch.meshgrid(fy, fx, indexing="ij"), dim=-1), dim=-1)
        ranked = torch.sort(radius.flatten()).indices
    else:
        iy = torch.arange(rows, dtype=torch.int64)
        iy = torch.where(iy < (rows + 1) // 2, iy, iy - rows)
        ix = torch.arange(width, dtype=torch.int64)
        key = (iy * cols).square()[:, None] + (ix * rows).square()[None, :]
        ranked = torch.argsort(key.flatten(), stable=True)
    groups = torch.empty(total, dtype=torch.int64)
    groups[ranked] = torch.arange(total, dtype=torch.int64) * num_kernels // total
    return groups.reshape(rows, width).to(group_index_dtype(num_kernels))
