"""Batch normalisation for attention branches that must also run on a batch of one in train mode."""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def batch_norm_any_batch(bn: nn.BatchNorm2d, z: Tensor) -> Tensor:
    """``bn(z)``, except that a single sample in train mode is normalised with the running statistics.

    A variance cannot be estimated from one value per channel (``nn.BatchNorm2d`` raises there); the
    running statistics are used and left unchanged.
    """
    if bn.training and z.shape[0] == 1 and bn.running_mean is not None:
        return F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return bn(z)
