"""The attention-trunk norms of FDConv / ODConv from their formulas (one sample statistic at a time)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch import Tensor


def naive_attention_norm(norm: Any, z: Tensor) -> Tensor:
    """Normalise the hidden (B, C) attention vector as ``norm`` (``'batch'``, ``'frozen'`` or ``'layer'``) does."""
    if isinstance(norm, nn.GroupNorm):  # 'layer': statistics of each sample over its C values
        mean, var = z.mean(1, keepdim=True), z.var(1, unbiased=False, keepdim=True)
    elif norm.training and not getattr(norm, "frozen", False) and z.shape[0] > 1:
        mean, var = z.mean(0), z.var(0, unbiased=False)
    else:
        mean, var = norm.running_mean, norm.running_var
    return (z - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
