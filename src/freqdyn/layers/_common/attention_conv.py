"""The small convolutions and linear maps inside attention branches, kept out of reach of network-wide rules.

Every attention branch calls these as modules, so forward hooks and pre-hooks on them fire and hook-based tools
(``torch.nn.utils.prune``, activation capture, FLOP counters) see them; they compute in their input's dtype
(attentions of half-precision layers run in float32).
"""
from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .device_dtype import as_dtype, factory_kwargs
from .program_mode import compiling, exporting, functorch_active


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
        """x (B, in, H, W) -> (B, out, H, W), or a pooled x (B, in) -> (B, out) for a 1x1 conv without groups (the
        conv of a (B, in, 1, 1) map, as one matmul); in x's dtype."""
        bias = None if self.bias is None else as_dtype(self.bias, x.dtype)
        weight = as_dtype(self.weight, x.dtype)
        if x.dim() == 2:
            if self.kernel_size != (1, 1) or self.groups != 1:
                raise ValueError(f"{type(self).__name__}: a 2-D (B, C) input needs a 1x1 conv without groups, this "
                                 f"one has kernel_size={self.kernel_size}, groups={self.groups}")
            return F.linear(x, weight.flatten(1), bias)
        return F.conv2d(x, weight, bias, 1, self.padding, 1, self.groups)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + (", bias=False" if self.bias is None else "")


class AttentionLinear(nn.Linear):
    """``nn.Linear`` of an attention branch, (..., in_features) -> (..., out_features) in the input's dtype (the
    attentions of half-precision layers run in float32); same parameters, keys and initialisation."""

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else as_dtype(self.bias, x.dtype)
        return F.linear(x, as_dtype(self.weight, x.dtype), bias)


class AttentionConv1d(nn.Conv1d):
    """``nn.Conv1d`` with one input channel along the channel axis of a pooled vector: x (B, 1, L) ->
    (B, out_channels, L) in x's dtype, as one matmul over sliding windows (oneDNN is slow for this shape); a
    plain conv1d while tracing or exporting (the TorchScript-based ONNX exporter cannot export ``Tensor.unfold``).
    Same parameters, keys and initialisation as ``nn.Conv1d``; stride 1, odd kernel, 'same' zero padding."""

    def forward(self, x: Tensor) -> Tensor:
        weight = as_dtype(self.weight, x.dtype)
        bias = None if self.bias is None else as_dtype(self.bias, x.dtype)
        pad = cast(int, self.padding[0])
        if exporting() or x.shape[1] != 1:
            return F.conv1d(x, weight, bias, padding=pad)
        batch, size = x.shape[0], self.kernel_size[0]
        if functorch_active() or compiling():
            padded = F.pad(x[:, 0], (pad, size - 1 - pad))
        else:  # written into zeros: fewer dispatched ops than F.pad
            padded = x.new_zeros(batch, x.shape[2] + size - 1)
            padded[:, pad : pad + x.shape[2]] = x[:, 0]
        windows = padded.unfold(1, size, 1).contiguous()  # (B, L, size)
        # one batched matmul (F.linear on the strided window view dispatched one matmul per sample)
        taps = weight[:, 0].t().expand(batch, size, weight.shape[0])
        out = torch.bmm(windows, taps) if bias is None else torch.baddbmm(bias, windows, taps)  # (B, L, out)
        return out.transpose(1, 2)
