"""Naive CARAFE: the reference formulation that unfolds the k x k neighbourhoods into a (B, C*k*k, H, W) tensor."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from freqdyn.layers.carafe import pad_neighbourhood


def naive_carafe(x: Tensor, kernels: Tensor, kernel_size: int, groups: int = 1, scale: int = 1) -> Tensor:
    """Same contract as :func:`freqdyn.layers.carafe.carafe`, computed through ``F.unfold`` and indexing."""
    batch, channels, height, width = x.shape
    out_h, out_w = kernels.shape[-2:]
    src_h, src_w = -(-out_h // scale), -(-out_w // scale)
    if src_h > height or src_w > width:  # the edge extension for outputs one pixel larger than scale * input
        x = F.pad(x, [0, max(src_w - width, 0), 0, max(src_h - height, 0)], mode="replicate")
    rows, cols = torch.arange(out_h) // scale, torch.arange(out_w) // scale
    unfolded = F.unfold(pad_neighbourhood(x, kernel_size // 2), kernel_size)
    unfolded = unfolded.reshape(batch, channels, kernel_size**2, x.shape[-2], x.shape[-1])
    unfolded = unfolded[:, :, :, rows][:, :, :, :, cols]  # nearest upsampling of the neighbourhoods
    unfolded = unfolded.reshape(batch, groups, channels // groups, kernel_size**2, out_h, out_w)
    weights = kernels.reshape(batch, groups, 1, kernel_size**2, out_h, out_w)
    return (unfolded * weights).sum(dim=3).reshape(batch, channels, out_h, out_w)
