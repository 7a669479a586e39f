"""CondConv: Conditionally Parameterized Convolutions (Yang et al., NeurIPS 2019, arXiv:1904.04971)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from .._common.attention_conv import AttentionLinear
from .._common.attention_heads import Attentions
from .._common.conv_args import IntPair, Padding
from .._common.conv_contract import reset_bias
from .expert_conv import ExpertConv2d


class CondConvRouting(nn.Module):
    """Pooled (B, I) -> sigmoid(routing(pooled)), shape (B, K): independent per-expert weights."""

    def __init__(
        self,
        in_channels: int,
        num_experts: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.routing = AttentionLinear(in_channels, num_experts, device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        self.routing.reset_parameters()

    def neutralise_(self) -> None:
        """Zero the routing layer: every expert weighted 1/2 for every input."""
        with torch.no_grad():
            self.routing.weight.zero_()
            self.routing.bias.zero_()

    def forward(self, pooled: Tensor) -> Attentions:
        """In pooled's dtype (float32 for half layers), autocast off."""
        with torch.autocast(pooled.device.type, enabled=False):
            return Attentions(kernel=torch.sigmoid(self.routing(pooled)))


class CondConv2d(ExpertConv2d):
    """CondConv: y = conv(x, sum_k r_k(x) W_k) + sum_k r_k(x) b_k with r = sigmoid(routing(GAP(x))).

    Input (B, in_channels, H, W) -> (B, out_channels, H', W'). Every expert is initialised like an
    ``nn.Conv2d`` (as timm's CondConv2d). :meth:`from_conv` stores ``2 / K`` times the source kernel in every
    expert, because the neutral routing weights each expert by 1/2.

    timm's ``CondConv2d`` state (``weight`` (K, O*I/g*kh*kw), ``bias`` (K, O)) has this layout, and the routing
    ``nn.Linear`` that timm keeps beside it as ``routing_fn`` loads under that name too, so a timm CondConv
    block's ``conv`` + ``routing_fn`` keys load with ``strict=True``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode:
            as ``nn.Conv2d``.
        num_experts: K, the kernels mixed per sample by independent sigmoid routing weights.

    Shape:
        - Input: (B, in_channels, H, W).
        - Output: (B, out_channels, H', W') with ``nn.Conv2d``'s H' and W'.

    Differs from timm's ``CondConv2d`` (docs/kernel_bank.md), whose state loads with ``strict=True``:
        - the routing lives in ``attention.routing``; timm's ``routing_fn`` keys load into it;
        - :meth:`from_conv` stores 2 / K times the source kernel in every expert, so a converted layer is exact.

    Examples:
        >>> CondConv2d(16, 32, 3, padding=1, num_experts=8)(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 32, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: Padding = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        num_experts: int = 8,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            num_experts,
            device,
            dtype,
        )
        self.attention = CondConvRouting(in_channels, num_experts, device, dtype)
        self.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for name in ("weight", "bias"):
            if prefix + "routing_fn." + name in state_dict:
                state_dict[prefix + "attention.routing." + name] = state_dict.pop(prefix + "routing_fn." + name)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _init_expert(self, kernel: Tensor, bias: Tensor | None) -> None:
        nn.init.kaiming_uniform_(kernel, a=math.sqrt(5))
        reset_bias(bias, kernel[0].numel())
