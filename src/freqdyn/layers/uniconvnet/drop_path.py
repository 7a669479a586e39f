"""Stochastic depth (Huang et al., ECCV 2016): drop whole residual branches per sample in training."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from .._common.checks import check_real


class DropPath(nn.Module):
    """Stochastic depth: zeroes the branch x for a random ``drop_prob`` fraction of samples, rescales the rest.

    Args:
        drop_prob: the chance that a sample's branch is dropped in training, in [0, 1).

    Shape:
        - Input: (B, ...).
        - Output: the input's shape; in eval, the input itself.

    Differs from timm's DropPath (docs/uniconvnet.md):
        - ``drop_prob`` must be below 1 (timm's zeroes every branch at 1); kept branches are always scaled.

    Examples:
        >>> layer = DropPath(0.5).eval()
        >>> x = torch.randn(4, 8)
        >>> torch.equal(layer(x), x)  # the identity in eval
        True
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not check_real(drop_prob, "drop_prob", 0.0) < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
