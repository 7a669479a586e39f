"""LayerNorm over the channels of a (B, C, H, W) map (ConvNeXt's channels_first LayerNorm)."""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._common.checks import check_feature_map


class LayerNorm2d(nn.LayerNorm):
    """``nn.LayerNorm(C)`` over the channels at every pixel of a (B, C, H, W) map.

    Args:
        normalized_shape, eps, elementwise_affine, bias, device, dtype: as ``nn.LayerNorm``, with
            ``normalized_shape`` the channel count C.

    Shape:
        - Input: (B, C, H, W).
        - Output: (B, C, H, W).

    Differs from ConvNeXt's channels-first LayerNorm (docs/uniconvnet.md):
        - ``eps`` defaults to ``nn.LayerNorm``'s 1e-5 (theirs 1e-6; freqdyn's UniConvNet passes 1e-6);
        - ``F.layer_norm`` on the permuted map: their formula up to float rounding; a wrong C is a ``ValueError``.

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
