"""The small convolutions inside attention branches, kept out of reach of network-wide convolution rules."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .device_dtype import factory_kwargs


class AttentionConv(nn.Module):
    """x (B, in_channels, H, W) -> (B, out_channels, H, W): a square, stride-1 convolution of an attention branch.

    It has ``nn.Conv2d``'s parameters (``weight`` (out, in // groups, k, k), ``bias`` (out,)), state_dict keys,
    default initialisation and maths (in the input's dtype), but is deliberately not an ``nn.Conv2d``: rules
    that a host library applies to every convolution of a network (mmengine ``init_cfg=dict(type='Kaiming',
    layer='Conv2d')``, :func:`freqdyn.convert`, conv-BN fusion) then leave the attention, and its neutral zero
    initialisation, alone.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = factory_kwargs(device, dtype)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.padding = (kernel_size, kernel_size), (padding, padding)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kernel_size, kernel_size, **kw))
        self.bias = nn.Parameter(torch.empty(out_channels, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s default initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """In x's dtype: attentions of half-precision layers run in float32."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.conv2d(x, self.weight.to(x.dtype), bias, 1, self.padding, 1, self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + (", bias=False" if self.bias is None else "")
