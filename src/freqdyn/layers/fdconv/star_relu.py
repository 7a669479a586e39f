"""StarReLU: ``s * relu(x) ** 2 + b`` with learnable scalars (MetaFormer baselines, Yu et al. 2022)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._common.checks import check_bool, check_real
from .._common.device_dtype import factory_kwargs


def star_relu(x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """``scale * relu(x) ** 2 + bias``, as ``relu(x) * scale * relu(x) + bias``: two products and a sum, in a
    training step fewer dispatched ops than addcmul (whose backward multiplies by its scalar factor) or a square.
    """
    positive = F.relu(x)
    return positive * scale * positive + bias


class StarReLU(nn.Module):
    """StarReLU, ``scale * relu(x) ** 2 + bias`` with learnable scalars (FDConv's attention trunks use it).

    Args:
        scale_value, bias_value: the initial scale and bias.
        scale_learnable, bias_learnable: whether each is trained.
        device, dtype: of the two parameters.

    Shape:
        - Input: any shape.
        - Output: the input's shape.

    Differs from MetaFormer's StarReLU (docs/fdconv.md):
        - no ``inplace`` option: ``relu(x)`` is used twice, so the input is never overwritten;
        - computed as ``relu(x) * scale * relu(x) + bias``: the same function up to float rounding.

    Examples:
        >>> StarReLU()(torch.tensor([-1.0, 0.0, 2.0])).detach()
        tensor([0., 0., 4.])
    """

    def __init__(
        self,
        scale_value: float = 1.0,
        bias_value: float = 0.0,
        scale_learnable: bool = True,
        bias_learnable: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        scale_value, bias_value = check_real(scale_value, "scale_value"), check_real(bias_value, "bias_value")
        scale_learnable = check_bool(scale_learnable, "scale_learnable")
        bias_learnable = check_bool(bias_learnable, "bias_learnable")
        self.scale_value = scale_value
        self.bias_value = bias_value
        kw = factory_kwargs(device, dtype)
        self.scale = nn.Parameter(torch.empty(1, **kw), requires_grad=scale_learnable)
        self.bias = nn.Parameter(torch.empty(1, **kw), requires_grad=bias_learnable)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.scale, self.scale_value)
        nn.init.constant_(self.bias, self.bias_value)

    def forward(self, x: Tensor) -> Tensor:
        return star_relu(x, self.scale, self.bias)

    def extra_repr(self) -> str:
        return f"scale_value={self.scale_value}, bias_value={self.bias_value}"
