"""The four-head attention trunk shared by ODConv's omni-dimensional attention and FDConv's KSM-Global."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .attention_conv import AttentionConv
from .attention_norm import attention_norm
from .checks import check_int, check_real
from .device_dtype import as_dtype, factory_kwargs, scalar
from .joined import joined
from .program_mode import compute_dtype, has_hooks


@dataclass
class Attentions:
    """Per-sample attentions of a dynamic conv; ``None`` marks a factor that is switched off (a factor of 1)."""

    kernel: Tensor | None = None  # (B, K) mixing weights of the kernels (FDConv: (B, P * K); None when P * K == 1)
    channel: Tensor | None = None  # (B, I) scales the input channels
    filter: Tensor | None = None  # (B, O) scales the output channels (before the bias)
    spatial: Tensor | None = None  # (B, kh * kw) scales the kernel positions


ACTIVATIONS = ("sigmoid", "tanh")


def modulation(logits: Tensor, act: str, multiplier: float, inplace: bool = False, temp: float = 1.0) -> Tensor:
    """``multiplier * sigmoid(logits / temp)`` or ``1 + tanh(logits / temp)``; both equal 1 at zero logits
    (multiplier 2). A temperature or multiplier of 1 costs no op.

    ``inplace`` overwrites ``logits`` (for large intermediates that autograd does not need).
    """
    if temp != 1.0:
        logits = logits.div_(scalar(temp, logits)) if inplace else logits / scalar(temp, logits)
    if act != "sigmoid":
        one = scalar(1.0, logits)
        return logits.tanh_().add_(one) if inplace else one + torch.tanh(logits)
    out = logits.sigmoid_() if inplace else torch.sigmoid(logits)
    if multiplier == 1.0:
        return out
    return out.mul_(scalar(multiplier, out)) if inplace else out * scalar(multiplier, out)


def kernel_modulation(logits: Tensor, act: str, num_kernels: int, temp: float) -> Tensor:
    """The kernel attention of FDConv's KSM: ``2 * sigmoid(logits / temp) / num_kernels`` (one multiplier) or
    ``(1 + tanh(logits / temp)) / num_kernels``: 1 / num_kernels each at zero logits.
    """
    if act == "sigmoid":
        return modulation(logits, act, 2.0 / num_kernels, temp=temp)
    return modulation(logits, act, 2.0, temp=temp) / num_kernels


def check_activation(act: str, name: str) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"{name} must be one of {ACTIVATIONS}, got {act!r}")


class AttentionHeads(nn.Module):
    """Pooled (B, I) -> hidden (B, hidden, 1, 1) -> 1x1 heads for channel (I), filter (O), spatial (kh*kw), kernel (K).

    fc (1x1, no bias) -> norm -> :meth:`activation` (every conv an :class:`AttentionConv`), hidden =
    max(int(I * reduction), min_hidden). As in the reference codes, the filter head is skipped for depthwise
    layers, the spatial head for 1x1 kernels and the kernel head when K == 1. ``norm`` is the official
    BatchNorm (``'batch'``), its ``'frozen'`` statistics or a batch-independent ``'layer'`` norm
    (:mod:`freqdyn.layers._common.attention_norm`). Subclasses turn the head logits into attentions and call
    ``reset_parameters`` once their own modules exist.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        groups: int,
        num_kernels: int,
        reduction: float,
        min_hidden: int,
        device: torch.device | None,
        dtype: torch.dtype | None,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        kw = factory_kwargs(device, dtype)
        reduction, min_hidden = check_real(reduction, "reduction", 0.0), check_int(min_hidden, "min_hidden", 0)
        hidden = max(int(in_channels * reduction), min_hidden)
        if hidden < 1:
            raise ValueError(
                f"attention hidden width max(int(in_channels * reduction), min_hidden) is {hidden}: "
                f"raise reduction ({reduction}) or min_hidden ({min_hidden})"
            )
        self.num_kernels = num_kernels
        self.fc = AttentionConv(in_channels, hidden, 1, bias=False, **kw)
        self.bn = attention_norm(norm, hidden, **kw)
        self.channel_fc = AttentionConv(hidden, in_channels, 1, **kw)
        depthwise = in_channels == groups == out_channels
        self.filter_fc = None if depthwise else AttentionConv(hidden, out_channels, 1, **kw)
        spatial = kernel_size[0] * kernel_size[1]
        self.spatial_fc = AttentionConv(hidden, spatial, 1, **kw) if spatial > 1 else None
        self.kernel_fc = AttentionConv(hidden, num_kernels, 1, **kw) if num_kernels > 1 else None

    def heads(self) -> list[AttentionConv]:
        return [h for h in (self.channel_fc, self.filter_fc, self.spatial_fc, self.kernel_fc) if h is not None]

    def zero_heads_(self) -> None:
        """Zero every head's weight and bias: input-independent logits of 0."""
        with torch.no_grad():
            for head in self.heads():
                head.weight.zero_()
                if head.bias is not None:
                    head.bias.zero_()

    def activation(self, z: Tensor) -> Tensor:
        return F.relu(z)

    def hidden(self, pooled: Tensor) -> Tensor:
        """(B, I) -> (B, hidden), the input of every head; float32 for half dtypes (FDConv's StarReLU squares
        its input), with autocast off.
        """
        with torch.autocast(pooled.device.type, enabled=False):
            # the norms take (B, hidden) as they take (B, hidden, 1, 1): no reshapes around them
            return self.activation(self.bn(self.fc(as_dtype(pooled, compute_dtype(pooled.dtype)))))

    def _named_heads(self) -> list[tuple[str, AttentionConv]]:
        names = ("channel", "filter", "spatial", "kernel")
        return [(n, getattr(self, n + "_fc")) for n in names if getattr(self, n + "_fc") is not None]

    def joint_logits(self, z: Tensor) -> tuple[Tensor, dict[str, int]] | None:
        """The logits of every head side by side, (B, sum of head widths), from one matmul of their stacked
        weights, with each present head's width in column order; ``None`` when any head has a hook (a pruning
        mask, an activation probe), which must then run as its module.
        """
        heads = self._named_heads()
        if any(has_hooks(h) for _, h in heads):
            return None
        with torch.autocast(z.device.type, enabled=False):
            weights = [h.weight for _, h in heads]
            weight = as_dtype(joined(weights, (-1, math.prod(weights[0].shape[1:]))), z.dtype)
            bias = as_dtype(joined([cast(Tensor, h.bias) for _, h in heads]), z.dtype)  # heads have biases
            return F.linear(z, weight, bias), {n: h.out_channels for n, h in heads}

    def head_logits(self, z: Tensor) -> dict[str, Tensor | None]:
        """Logits of the channel, filter, spatial and kernel heads (None where skipped), in z's dtype: split from
        :meth:`joint_logits`, or with a hooked head, each head called as its module. Same function.
        """
        joint = self.joint_logits(z)
        if joint is None:
            with torch.autocast(z.device.type, enabled=False):
                found = {n: h(z) for n, h in self._named_heads()}
        else:
            logits, widths = joint
            found = dict(zip(widths, logits.split(list(widths.values()), dim=1), strict=True))
        return {n: found.get(n) for n in ("channel", "filter", "spatial", "kernel")}
