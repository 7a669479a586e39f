"""The global average pooling that feeds every attention branch: (B, C, H, W) or (B, N, C) -> (B, C)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .device_dtype import scalar
from .program_mode import compiling, exporting


def mean_pool(x: Tensor, dims: Sequence[int], dtype: torch.dtype) -> Tensor:
    """The mean of x over ``dims``, accumulated and returned in ``dtype``: a sum times a cached 1 / N (``torch.mean``
    divides by a wrapped Python number, which dispatches six more ops).
    """
    if compiling() or exporting():  # a graph: torch.mean keeps the sizes symbolic, and dispatch costs nothing there
        return x.mean(dim=tuple(dims), dtype=dtype)
    total = x.sum(dim=tuple(dims), dtype=dtype)
    return total * scalar(1.0 / math.prod([x.shape[d] for d in dims]), total)
