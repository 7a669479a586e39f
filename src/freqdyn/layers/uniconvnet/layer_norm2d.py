"""LayerNorm over the channels of a (B, C, H, W) map (ConvNeXt's channels_first LayerNorm)."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._common.checks import check_feature_map


class LayerNorm2d(nn.LayerNorm):
    """``nn.LayerNorm(C)`` applied at every pixel of x (B, C, H, W); same parameters, state_dict and eps.

    Examples:
        >>> y = LayerNorm2d(8)(torch.randn(2, 8, 5, 5))
        >>> y.mean(1).abs().max() < 1e-5  # each pixel normalised over the channels
        tensor(True)
    """

    def forward(self, x: Tensor) -> Tensor:
        check_feature_map(x, self.normalized_shape[0], type(self).__name__)
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(
            0, 3, 1, 2
        )
