"""ODConv: Omni-Dimensional Dynamic Convolution (Li et al., ICLR 2022, arXiv:2209.07947)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from .._common.attention_heads import AttentionHeads, Attentions
from .._common.attention_norm import reset_norm
from .._common.conv_args import IntPair, Padding
from .expert_conv import ExpertConv2d
from .temperature import TemperatureBuffer, TemperatureMixin


class OmniAttention(TemperatureBuffer, AttentionHeads):
    """Pooled (B, I) -> four attentions: input channel (B, I), filter (B, O), spatial (B, kh*kw), kernel (B, K).

    fc (1x1, no bias) -> norm (BatchNorm by default) -> ReLU -> four 1x1 heads (:class:`AttentionHeads`);
    sigmoid(logit / T) for the first three and softmax(logits / T) over the kernels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        groups: int,
        num_experts: int,
        reduction: float = 0.0625,
        min_hidden: int = 16,
        temperature: float = 1.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        norm: str = "batch",
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, groups, num_experts, reduction, min_hidden, device, dtype, norm
        )
        self._register_temperature(temperature, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_temperature()
        for conv in (self.fc, *self.heads()):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        reset_norm(self.bn)

    def neutralise_(self) -> None:
        """Zero every head: sigmoid factors of 1/2 and a uniform 1/K kernel mixture for every input."""
        self.zero_heads_()

    def forward(self, pooled: Tensor) -> Attentions:
        z = self.hidden(pooled)
        logits = self.head_logits(z)

        def gate(name: str) -> Tensor | None:
            z = logits[name]
            return None if z is None else torch.sigmoid(z / self.temperature.to(z.dtype))

        if logits["kernel"] is None:
            kernel = z.new_ones(z.shape[0], 1)
        else:
            kernel = torch.softmax(logits["kernel"] / self.temperature.to(z.dtype), dim=1)
        return Attentions(kernel=kernel, channel=gate("channel"), filter=gate("filter"), spatial=gate("spatial"))


class ODConv2d(TemperatureMixin, ExpertConv2d):
    """ODConv: y = f(x) * conv(c(x) * x, s(x) * sum_k a_k(x) W_k) + sum_k a_k(x) b_k.

    Input (B, in_channels, H, W) -> (B, out_channels, H', W'). c, f, s are sigmoid attentions over input
    channels, output channels and kernel positions, a a softmax over the K kernels (:class:`OmniAttention`).
    The reference layer has no bias; here the bias is optional (``nn.Conv2d``'s default) and mixed by a.
    :meth:`from_conv` stores 2**n times the source kernel, n the number of sigmoid attentions, because
    each is 1/2 at the neutral state.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode:
            as ``nn.Conv2d``.
        num_experts: K, the number of kernels mixed per sample.
        reduction: hidden width of the attention trunk as a fraction of ``in_channels`` (at least
            ``min_hidden``).
        temperature: T of the sigmoid and softmax attentions; anneal it with
            :class:`freqdyn.TemperatureSchedule`.
        attention_norm: ``'batch'`` (the official BatchNorm), ``'frozen'`` or ``'layer'``
            (:mod:`freqdyn.layers._common.attention_norm`).

    Shape:
        - Input: (B, in_channels, H, W).
        - Output: (B, out_channels, H', W') with ``nn.Conv2d``'s H' and W'.

    Differs from the reference ODConv (docs/kernel_bank.md):
        - the bias is optional (the reference has none) and mixed by the kernel attention;
        - the attention's BatchNorm trains with a batch of one (it normalises it with the running statistics);
        - :meth:`from_conv` stores 2**n times the source kernel, so a converted layer is exact.

    Examples:
        >>> ODConv2d(16, 32, 3, padding=1, num_experts=4)(torch.randn(1, 16, 8, 8)).shape  # a batch of one trains too
        torch.Size([1, 32, 8, 8])
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
        num_experts: int = 4,
        reduction: float = 0.0625,
        min_hidden: int = 16,
        temperature: float = 1.0,
        attention_norm: str = "batch",
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
        self.attention = OmniAttention(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.groups,
            self.num_experts,
            reduction,
            min_hidden,
            temperature,
            device,
            dtype,
            attention_norm,
        )
        self.reset_parameters()

    def _init_expert(self, kernel: Tensor, bias: Tensor | None) -> None:
        nn.init.kaiming_normal_(kernel, mode="fan_out", nonlinearity="relu")
        if bias is not None:
            nn.init.zeros_(bias)
