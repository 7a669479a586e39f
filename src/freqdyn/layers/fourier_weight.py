"""Fourier Disjoint Weights (FDW, FDConv §3.1): a kernel stored as the rfft2 of its (O*kh, I*kw) matrix.

A conv weight W (O, I, kh, kw) is laid out as the matrix M[o*kh + a, i*kw + b] = W[o, i, a, b] (the official
layout). Its ``rfft2`` coefficients are sorted by radial frequency and split into K disjoint groups; each group,
inverse-transformed alone, is one of the K frequency-diverse kernels that the kernel attention mixes.
"""
from __future__ import annotations

import torch
from torch import Tensor


def weight_to_matrix(weight: Tensor) -> Tensor:
    """(..., O, I, kh, kw) -> (..., O*kh, I*kw)."""
    *lead, o, i, kh, kw = weight.shape
    return weight.transpose(-3, -2).reshape(*lead, o * kh, i * kw)


def matrix_to_weight(matrix: Tensor, kernel_size: tuple[int, int]) -> Tensor:
    """(..., O*kh, I*kw) -> (..., O, I, kh, kw); inverse of :func:`weight_to_matrix`."""
    *lead, rows, cols = matrix.shape
    kh, kw = kernel_size
    return matrix.reshape(*lead, rows // kh, kh, cols // kw, kw).transpose(-3, -2)


def group_index_dtype(num_groups: int) -> torch.dtype:
    """Smallest integer dtype that stores group ids 0..num_groups-1 (checkpoints stay small)."""
    if num_groups <= 256:
        return torch.uint8
    return torch.int16 if num_groups <= 2**15 else torch.int32


def frequency_groups(rows: int, cols: int, num_groups: int) -> Tensor:
    """Assign every ``rfft2`` coefficient of a (rows, cols) matrix to one of ``num_groups`` frequency groups.

    Coefficients are ordered by radial frequency sqrt(fy^2 + fx^2), with fy = fftfreq(rows) and
    fx = rfftfreq(cols) in cycles per sample along each axis (the official metric). The comparison uses the
    exact integer key (iy*cols)^2 + (ix*rows)^2 and a stable sort, so ties keep row-major order on every
    platform and torch version (the official code uses an unstable float32 sort). Sorted position r of n goes
    to group floor(r * K / n): contiguous, disjoint groups of near-equal size (exactly n / K when K divides n),
    group 0 holding the lowest frequencies.

    Returns:
        (rows, cols // 2 + 1) tensor of group ids, dtype from :func:`group_index_dtype`.
    """
    width = cols // 2 + 1
    total = rows * width
    if not 1 <= num_groups <= total:
        raise ValueError(f"kernel_num={num_groups} must lie in [1, {total}] for a {rows}x{cols} spectrum")
    iy = torch.arange(rows, dtype=torch.int64)
    iy = torch.where(iy < (rows + 1) // 2, iy, iy - rows)
    ix = torch.arange(width, dtype=torch.int64)
    key = (iy * cols).square()[:, None] + (ix * rows).square()[None, :]
    order = torch.argsort(key.flatten(), stable=True)
    groups = torch.empty(total, dtype=torch.int64)
    groups[order] = torch.arange(total, dtype=torch.int64) * num_groups // total
    return groups.reshape(rows, width).to(group_index_dtype(num_groups))
