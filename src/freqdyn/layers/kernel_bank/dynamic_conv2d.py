"""DY-Conv: Dynamic Convolution, attention over K convolution kernels (Chen et al., CVPR 2020, arXiv:1912.03458)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._common.attention_conv import AttentionConv
from .._common.attention_heads import Attentions
from .._common.checks import check_real
from .._common.conv_args import IntPair, Padding
from .._common.device_dtype import factory_kwargs
from .expert_conv import ExpertConv2d
from .temperature import TemperatureBuffer, TemperatureMixin


class DynamicConvAttention(TemperatureBuffer):
    """Pooled (B, I) -> softmax(fc2(relu(fc1(pooled))) / temperature), shape (B, K); ``temperature`` is a buffer.

    The hidden width is ``int(I * ratio) + 1``, or K for an RGB input (I == 3), as in the reference code.
    """

    def __init__(
        self,
        in_channels: int,
        num_experts: int,
        ratio: float,
        temperature: float,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = factory_kwargs(device, dtype)
        ratio = check_real(ratio, "ratio (hidden width int(in_channels * ratio) + 1)", 0.0)
        hidden = num_experts if in_channels == 3 else int(in_channels * ratio) + 1
        self._register_temperature(temperature, device, dtype)
        self.fc1 = AttentionConv(in_channels, hidden, 1, bias=False, **kw)
        self.fc2 = AttentionConv(hidden, num_experts, 1, **kw)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_temperature()
        for fc in (self.fc1, self.fc2):
            nn.init.kaiming_normal_(fc.weight, mode="fan_out", nonlinearity="relu")
        if self.fc2.bias is not None:
            nn.init.zeros_(self.fc2.bias)

    def neutralise_(self) -> None:
        """Zero the last layer: uniform 1/K attention for every input."""
        with torch.no_grad():
            self.fc2.weight.zero_()
            if self.fc2.bias is not None:
                self.fc2.bias.zero_()

    def forward(self, pooled: Tensor) -> Attentions:
        """In pooled's dtype (float32 for half layers), autocast off."""
        with torch.autocast(pooled.device.type, enabled=False):
            logits = self.fc2(F.relu(self.fc1(pooled[:, :, None, None]))).flatten(1)
            return Attentions(kernel=torch.softmax(logits / self.temperature.to(logits.dtype), dim=1))


class DynamicConv2d(TemperatureMixin, ExpertConv2d):
    """DY-Conv: y = conv(x, sum_k pi_k(x) W_k) + sum_k pi_k(x) b_k with pi = softmax(logits / T).

    Input (B, in_channels, H, W) -> (B, out_channels, H', W'), ``nn.Conv2d``'s H', W'. The paper anneals
    the temperature from 30 to 1 over the first epochs (:class:`freqdyn.TemperatureSchedule`); set it to 1
    for inference. With ``num_experts=1`` the layer is a plain convolution.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode:
            as ``nn.Conv2d``.
        num_experts: K, the kernels mixed per sample.
        ratio: hidden width of the attention MLP as a fraction of ``in_channels``.
        temperature: T of the softmax (the paper starts at 30 and anneals to 1).

    Shape:
        - Input: (B, in_channels, H, W).
        - Output: (B, out_channels, H', W') with ``nn.Conv2d``'s H' and W'.

    Differs from the reference implementations (docs/kernel_bank.md):
        - the K kernels are one 2-D bank (K, O * I/g * kh * kw); the references' 5-D bank loads into it;
        - :meth:`from_conv` is exact: every expert holds the kernel, plus zero-mean noise the neutral mixture cancels;
        - the temperature is a buffer, so checkpoints, EMA copies and DDP carry it.

    Examples:
        >>> layer = DynamicConv2d(16, 32, 3, padding=1, num_experts=4, temperature=30.0)
        >>> layer(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 32, 8, 8])
        >>> conv = torch.nn.Conv2d(16, 32, 3, padding=1)
        >>> x = torch.randn(2, 16, 8, 8)
        >>> torch.allclose(DynamicConv2d.from_conv(conv)(x), conv(x), atol=1e-5)
        True
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
        ratio: float = 0.25,
        temperature: float = 30.0,
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
        self.attention = DynamicConvAttention(self.in_channels, self.num_experts, ratio, temperature, device, dtype)
        self.reset_parameters()

    def _init_expert(self, kernel: Tensor, bias: Tensor | None) -> None:
        nn.init.kaiming_uniform_(kernel)  # the reference code's per-kernel init; biases start at zero
        if bias is not None:
            nn.init.zeros_(bias)
