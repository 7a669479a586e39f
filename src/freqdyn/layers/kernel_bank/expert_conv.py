"""Shared base of the kernel-bank dynamic convolutions (DY-Conv, CondConv, ODConv).

A layer holds K kernels and K biases; an attention module reads the globally pooled input and returns
per-sample mixing weights (and, for ODConv, channel / filter / spatial factors). The mixed kernels are
applied with :func:`batched_conv2d`, the engine FDConv uses too.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn as nn
from torch import Tensor

from .._common.attention_heads import Attentions
from .._common.batched_conv import batched_conv2d
from .._common.checks import check_feature_map, check_int
from .._common.conv_args import IntPair, Padding
from .._common.conv_contract import ConvContract
from .._common.device_dtype import as_dtype, factory_kwargs
from .._common.modulation import apply_attentions
from .._common.pooling import mean_pool
from .._common.program_mode import compute_dtype
from .._common.trace_only import TraceOnly


class KernelAttention(Protocol):
    """What :class:`ExpertConv2d` needs of its ``attention`` module."""

    def __call__(self, pooled: Tensor) -> Attentions: ...

    def reset_parameters(self) -> None: ...

    def neutralise_(self) -> None: ...

    training: bool

    def train(self, mode: bool = True) -> nn.Module: ...

    def eval(self) -> nn.Module: ...


class ExpertConv2d(TraceOnly, ConvContract):
    """``nn.Conv2d``-compatible layer whose kernel is a per-sample mixture of ``num_experts`` kernels.

    ``weight`` is stored as a 2-D (K, O * I/groups * kh * kw) bank (as timm's CondConv does: ultralytics
    moves 4-D and 5-D tensors to channels_last and rejects 5-D parameters), ``bias`` as (K, O). A 5-D
    (K, O, I/groups, kh, kw) ``weight``, the layout of the reference implementations, loads too.

    A plain ``nn.Conv2d`` state_dict (``weight`` (O, I/groups, kh, kw), ``bias`` (O,)) loads by conversion,
    as :meth:`from_conv` converts (attention made neutral), so a network built from a config computes the
    pretrained function.

    Subclasses set ``self.attention`` (a module with ``forward(pooled (B, I)) -> Attentions`` and
    ``neutralise_()``, which makes its output input-independent) and ``_init_expert``.
    """

    attention: KernelAttention

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair,
        padding: Padding,
        dilation: IntPair,
        groups: int,
        bias: bool,
        padding_mode: str,
        num_experts: int,
        device: torch.device | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        self._set_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode)
        self.num_experts = check_int(num_experts, "num_experts")
        self.kernel_shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        kw = factory_kwargs(device, dtype)
        self.weight = nn.Parameter(torch.empty(self.num_experts, math.prod(self.kernel_shape), **kw))
        self.bias = nn.Parameter(torch.empty(self.num_experts, self.out_channels, **kw)) if bias else None

    def _init_expert(self, kernel: Tensor, bias: Tensor | None) -> None:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Each kernel (and bias) initialised as the method's reference code does; the attention too."""
        with torch.no_grad():
            for k in range(self.num_experts):
                self._init_expert(self.weight[k].view(self.kernel_shape), None if self.bias is None else self.bias[k])
        self.attention.reset_parameters()

    def kernels(self) -> Tensor:
        """The kernel bank as (K, O, I/groups, kh, kw)."""
        return self.weight.view(self.num_experts, *self.kernel_shape)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, *, expert_noise: float = 0.1, **kwargs) -> ExpertConv2d:
        """Convert an ``nn.Conv2d``: every kernel starts from its weight and the output equals ``conv``'s.

        The attention's last layers are zeroed, so the attentions are input-independent constants; the
        kernels (biases) are the conv's weight (bias) divided by the constant total gain, which is 1 for a
        softmax mixture (DY-Conv) and 2**-n (n sigmoid factors) or K/2 (sigmoid routing) otherwise.

        Identical kernels would never separate: the attention's gradient is the same for every kernel,
        so the mixture would stay a static conv. Each kernel therefore gets zero-mean noise across the
        kernels (std ``expert_noise`` times the weight's std); the uniform neutral mixture cancels it, so
        the output still equals ``conv``'s.
        """
        if expert_noise < 0:
            raise ValueError(f"expert_noise must be >= 0, got {expert_noise}")
        layer = cls._like(conv, **kwargs)
        with torch.no_grad():
            weight, bias = layer.experts_from_conv(conv.weight, conv.bias, expert_noise)
            layer.weight.copy_(weight)
            if bias is not None and layer.bias is not None:
                layer.bias.copy_(bias)
        return layer.train(conv.training)

    @torch.no_grad()
    def experts_from_conv(
        self, weight: Tensor, bias: Tensor | None, expert_noise: float = 0.1
    ) -> tuple[Tensor, Tensor | None]:
        """Neutralise the attention and return the (K, O*I/g*kh*kw) bank and (K, O) biases of a plain conv.

        Each kernel is the weight divided by the neutral gain plus zero-mean noise across the kernels, so
        the neutral mixture equals the conv exactly (see :meth:`from_conv`).
        """
        self.attention.neutralise_()
        weight_gain, bias_gain = self.neutral_gains()
        source = weight.reshape(1, -1).to(self.weight)
        noise = torch.randn_like(self.weight) * (expert_noise * source.std(unbiased=False))
        bank = (source + noise - noise.mean(dim=0, keepdim=True)) / weight_gain
        return bank, None if bias is None else (bias.to(self.weight) / bias_gain).expand(self.num_experts, -1)

    def neutral_gains(self) -> tuple[float, float]:
        """Total factor the (neutralised) attention applies to the kernel and to the bias."""
        training = self.attention.training
        self.attention.eval()
        with torch.no_grad():
            att = self.attention(torch.zeros(1, self.in_channels, device=self.weight.device, dtype=self.weight.dtype))
        self.attention.train(training)
        bias_gain = 1.0 if att.kernel is None else att.kernel.sum().item()
        weight_gain = bias_gain
        for factor in (att.channel, att.filter, att.spatial):
            if factor is not None:
                weight_gain *= factor.mean().item()
        return weight_gain, bias_gain

    def forward(self, x: Tensor) -> Tensor:
        check_feature_map(x, self.in_channels, type(self).__name__)
        if not x.shape[0]:
            return self._empty_batch(x)
        x = self._layout_input(x)
        batch, dtype = x.shape[0], x.dtype
        att: Attentions = self.attention(mean_pool(x, (2, 3), compute_dtype(x.dtype)))  # float32 for half
        if att.kernel is None:
            raise ValueError(f"{type(self).__name__}: its attention must return a kernel mixture")
        work = att.kernel.dtype  # ODConv's attention trunk runs in float32 for half dtypes
        bank = (att.kernel @ as_dtype(self.weight, work)).reshape(batch, *self.kernel_shape)
        bias = None if self.bias is None else (att.kernel @ as_dtype(self.bias, work)).to(dtype)
        weight, features, out_scale = apply_attentions(bank, att, self.groups, features=x)
        x, padding = self._pad(x if features is None else features)
        return self._layout_output(
            batched_conv2d(
                x, weight.to(dtype), bias, self.stride, padding, self.dilation, self.groups, out_scale=out_scale
            )
        )

    def is_plain_weight(self, weight: Tensor) -> bool:
        """Whether ``weight`` is the (O, I/groups, kh, kw) kernel of the plain conv this layer replaces."""
        return tuple(weight.shape) == self.kernel_shape

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        key = prefix + "weight"
        weight = state_dict.get(key)
        if isinstance(weight, Tensor) and weight.dim() == 5:  # the reference implementations' bank
            state_dict[key] = weight.reshape(self.num_experts, -1)
        elif isinstance(weight, Tensor) and self.is_plain_weight(weight):
            bias = state_dict.get(prefix + "bias")
            plain_bias = bias if isinstance(bias, Tensor) and bias.dim() == 1 else None
            state_dict[key], converted = self.experts_from_conv(weight, plain_bias)
            if converted is not None:
                state_dict[prefix + "bias"] = converted
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_experts={self.num_experts}"
