"""Kernel Spatial Modulation (KSM, FDConv §3.2): global and local attentions over the kernel's elements.

Both branches read the globally pooled input (B, I) and produce multiplicative factors that are neutral
(exactly 1) at initialisation, because every head's last layer starts at zero (see :class:`FDConv`).
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn as nn
from torch import Tensor

from .._common.attention_conv import AttentionConv1d
from .._common.attention_heads import (
    AttentionHeads,
    Attentions,
    check_activation,
    kernel_modulation,
    modulation,
)
from .._common.attention_norm import AttentionBatchNorm, AttentionLayerNorm, reset_norm
from .._common.device_dtype import as_dtype, factory_kwargs, scalar
from .._common.program_mode import compiling, compute_dtype, has_hooks, may_overwrite, may_use_custom_kernels
from .._compat import restore_local_conv
from .global_trunk import global_trunk
from .star_relu import StarReLU


def local_kernel_size(channels: int) -> int:
    """Odd 1-D kernel size of KSM-Local: 32 -> 3, 64..512 -> 5, 1024/2048 -> 7 (official formula)."""
    return 2 * int(round(math.log2(channels) / 2 + 0.5) // 2) + 1


class KernelSpatialModulationGlobal(AttentionHeads):
    """Pooled (B, I) -> channel, filter, spatial and kernel attentions.

    fc (1x1, no bias) -> norm (BatchNorm by default) -> StarReLU -> four 1x1 heads (:class:`AttentionHeads`),
    as in the official KSM-Global. The kernel head is ``2 * sigmoid(logit / kernel_temp) / (K * P)`` so that the
    mixture is neutral at zero logits; every head starts at zero.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        groups: int,
        num_kernels: int,
        reduction: float = 0.0625,
        min_hidden: int = 16,
        temp: float = 1.0,
        kernel_temp: float = 1.0,
        att_multi: float = 2.0,
        act: str = "sigmoid",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        norm: str = "batch",
    ) -> None:
        check_activation(act, "ksm_act")
        super().__init__(
            in_channels, out_channels, kernel_size, groups, num_kernels, reduction, min_hidden, device, dtype, norm
        )
        self.temp, self.kernel_temp, self.att_multi, self.act = temp, kernel_temp, att_multi, act
        self.relu = StarReLU(device=device, dtype=dtype)
        self.reset_parameters()

    def activation(self, z: Tensor) -> Tensor:
        return self.relu(z)

    def _takes_trunk_function(self) -> bool:
        """Whether :meth:`forward` takes :func:`~freqdyn.layers.fdconv.global_trunk.global_trunk`: one activation
        for every head, the BatchNorm, no hook on any part, outside traces and ``torch.func``; compiled (one
        operator), where the BatchNorm has a momentum.
        """
        return (
            self.act == "sigmoid"
            and self.temp == self.kernel_temp
            and isinstance(self.bn, AttentionBatchNorm)
            and may_use_custom_kernels()
            and (not compiling() or self.bn.momentum is not None)
            and not any(has_hooks(m) for m in self.modules() if m is not self)
        )

    def _fused_forward(self, pooled: Tensor) -> Attentions:
        """:meth:`forward` by :func:`~freqdyn.layers.fdconv.global_trunk.global_trunk`: the same function."""
        heads = self._named_heads()
        with torch.autocast(pooled.device.type, enabled=False):
            work = compute_dtype(pooled.dtype)
            bn = cast(AttentionBatchNorm, self.bn)
            # the kernel head's 2 / K in place of att_multi: the mixture is neutral at zero logits
            multipliers = tuple(2.0 / self.num_kernels if n == "kernel" else self.att_multi for n, _ in heads)
            outputs = global_trunk(
                as_dtype(pooled, work),
                as_dtype(self.fc.weight, work),
                bn,
                as_dtype(bn.weight, work),
                as_dtype(bn.bias, work),
                as_dtype(self.relu.scale, work),
                as_dtype(self.relu.bias, work),
                [as_dtype(h.weight, work) for _, h in heads],
                [as_dtype(cast(Tensor, h.bias), work) for _, h in heads],
                multipliers,
                self.temp,
            )
        parts = dict(zip([n for n, _ in heads], outputs, strict=True))
        return Attentions(
            channel=parts.get("channel"),
            filter=parts.get("filter"),
            spatial=parts.get("spatial"),
            kernel=parts.get("kernel"),
        )

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.fc.weight, mode="fan_out", nonlinearity="relu")
        reset_norm(self.bn)
        self.relu.reset_parameters()
        self.zero_heads_()

    def forward(self, pooled: Tensor) -> Attentions:
        if self._takes_trunk_function():
            return self._fused_forward(pooled)
        z = self.hidden(pooled)
        joint = self.joint_logits(z) if self.act == "sigmoid" and self.temp == self.kernel_temp else None
        if joint is not None:  # one activation for every head; the kernel head's 2 / K replaces att_multi
            att, widths = joint
            att = modulation(att, self.act, self.att_multi, temp=self.temp)
            parts = dict(zip(widths, att.split(list(widths.values()), dim=1), strict=True))
            kernel = parts.get("kernel")
            if kernel is not None:
                kernel = kernel * scalar(2.0 / (self.num_kernels * self.att_multi), kernel)
            return Attentions(
                channel=parts.get("channel"), filter=parts.get("filter"), spatial=parts.get("spatial"), kernel=kernel
            )
        logits = self.head_logits(z)

        def head(name: str) -> Tensor | None:
            z = logits[name]
            return None if z is None else modulation(z, self.act, self.att_multi, temp=self.temp)

        kernel = logits["kernel"]
        if kernel is not None:
            kernel = kernel_modulation(kernel, self.act, self.num_kernels, self.kernel_temp)
        return Attentions(channel=head("channel"), filter=head("filter"), spatial=head("spatial"), kernel=kernel)

    @torch.no_grad()
    def saturated(self, att: Attentions, share: float = 0.5) -> list[str]:
        """Heads of ``att`` (this module's output) with more than ``share`` of their values within 1e-3 of a bound
        of their sigmoid (0 or the top), where the gradients through them vanish.
        """
        top = self.att_multi if self.act == "sigmoid" else 2.0
        bounds = {"channel": top, "filter": top, "spatial": top, "kernel": 2.0 / self.num_kernels}
        names = []
        for name, upper in bounds.items():
            values = getattr(att, name)
            if values is not None:
                tol = 1e-3 * upper
                if ((values < tol) | (values > upper - tol)).float().mean().item() > share:
                    names.append(name)
        return names


class KernelSpatialModulationLocal(nn.Module):
    """Pooled (B, I) -> dense per-element attention (B, O, I // groups, kh, kw).

    LayerNorm over the I channels, then a 1-D convolution along the channel axis with (O // groups)*kh*kw
    output channels: output channel q = (o, a, b) and position i give the factor of W[o, i, a, b]
    (official mapping). With groups > 1, position i belongs to channel group i // (I // groups) and feeds
    the output channels of that group.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        groups: int,
        att_multi: float = 2.0,
        act: str = "sigmoid",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_activation(act, "ksm_act")
        kw = factory_kwargs(device, dtype)
        self.out_channels, self.kernel_size, self.groups = out_channels, kernel_size, groups
        self.att_multi, self.act = att_multi, act
        ks = local_kernel_size(in_channels)
        self.norm = AttentionLayerNorm(in_channels, **kw)
        per_group = out_channels // groups * kernel_size[0] * kernel_size[1]
        self.conv = AttentionConv1d(1, per_group, ks, padding=(ks - 1) // 2, bias=False, **kw)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        nn.init.zeros_(self.conv.weight)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        restore_local_conv(self)

    @property
    def gain(self) -> float:
        """The constant multiplier of the attention: ``att_multi`` for 'sigmoid', 1 for 'tanh' (1 + tanh)."""
        return self.att_multi if self.act == "sigmoid" else 1.0

    def normed(self, pooled: Tensor) -> Tensor:
        """The layer-normed pooled input (B, I), the input of the 1-D conv: float32 for half dtypes, as KSM-Global."""
        with torch.autocast(pooled.device.type, enabled=False):
            return self.norm(as_dtype(pooled, compute_dtype(pooled.dtype)))

    def forward(self, pooled: Tensor, with_gain: bool = True) -> Tensor:
        """(B, I) -> (B, O, I // groups, kh, kw); ``with_gain=False`` leaves out :attr:`gain` (the caller
        applies it elsewhere).
        """
        batch, channels = pooled.shape
        kh, kw = self.kernel_size
        g = self.groups
        with torch.autocast(pooled.device.type, enabled=False):
            logits = self.conv(self.normed(pooled))  # (B, I, O/g*kh*kw)
        inplace = may_overwrite()
        att = modulation(logits, self.act, self.att_multi if with_gain else 1.0, inplace=inplace)
        if g == 1:  # one view and one permute
            return att.view(batch, channels, self.out_channels, kh, kw).transpose(1, 2)
        att = att.reshape(batch, g, channels // g, self.out_channels // g, kh, kw).permute(0, 1, 3, 2, 4, 5)
        return att.reshape(batch, self.out_channels, channels // g, kh, kw)
