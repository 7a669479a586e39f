"""Naive CARAFE: the reference formulation, which unfolds the k x k neighbourhoods into (B, C*k*k, h, w) and
upsamples them by nearest indexing. The tests compare it with :func:`freqdyn.layers.freqfusion.carafe.carafe` (the view
loop, and the stacked views used under export and torch.func), both independent formulations.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from ...layers.freqfusion.carafe import pad_neighbourhood

__all__ = ["naive_carafe"]


def naive_carafe(
    x: Tensor, kernels: Tensor, kernel_size: int, groups: int = 1, scale: int = 1, padding: str = "zeros"
) -> Tensor:
    """CARAFE of x (B, C, h, w) with kernels (B, groups * k * k, Ho, Wo) -> (B, C, Ho, Wo), materialising the
    (B, C * k * k, Ho, Wo) neighbourhoods.
    """
    batch, channels, height, width = x.shape
    out_h, out_w = kernels.shape[-2:]
    src_h, src_w = -(-out_h // scale), -(-out_w // scale)
    if src_h > height or src_w > width:  # the edge extension for outputs one pixel larger than scale * input
        x = F.pad(x, [0, max(src_w - width, 0), 0, max(src_h - height, 0)], mode="replicate")
    rows, cols = torch.arange(out_h) // scale, torch.arange(out_w) // scale
    unfolded = F.unfold(pad_neighbourhood(x, kernel_size // 2, padding), kernel_size)
    unfolded = unfolded.reshape(batch, channels, kernel_size**2, x.shape[-2], x.shape[-1])
    unfolded = unfolded[:, :, :, rows][:, :, :, :, cols]  # nearest upsampling of the neighbourhoods
    unfolded = unfolded.reshape(batch, groups, channels // groups, kernel_size**2, out_h, out_w)
    weights = kernels.reshape(batch, groups, 1, kernel_size**2, out_h, out_w)
    return (unfolded * weights).sum(dim=3).reshape(batch, channels, out_h, out_w)
