"""The authors' FDLinear for Qwen2-VL (``FDLinear4Qwen/FDLinear.py`` in Linwei-Chen/FDConv), checkpoint-exact.

A different module from :class:`freqdyn.FDLinear` (which is FDConv with a 1x1 kernel): its attention trunk is
fc -> RMSNorm -> ReLU with ``nn.Linear`` heads (no BatchNorm, no StarReLU), its local attention is a Conv1d
over the pooled input without a LayerNorm (``local_conv``, off by default), ``kernel_num`` is 4, and its forward
takes packed sequences (``cu_seqlens``) with one synthesised weight per segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._common.attention_conv import AttentionConv1d, AttentionLinear
from .._common.attention_heads import Attentions, check_activation, kernel_modulation, modulation
from .._common.checks import ArgumentTypeError, check_features_last, check_int
from .._common.device_dtype import as_dtype, factory_kwargs
from .._common.program_mode import compute_dtype
from .._common.trace_only import TraceOnly
from .fourier_dynamic import DEFAULTS, FourierOptions
from .kernel_spatial_modulation import local_kernel_size
from .linear import LinearFourierBase


class RMSNorm(nn.Module):
    """Qwen2's RMSNorm over the last dimension: x / sqrt(mean(x^2) + eps) * weight (no mean subtraction)."""

    def __init__(
        self, features: int, eps: float = 1e-6, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(features, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps) * as_dtype(self.weight, x.dtype)


class LinearKernelAttention(nn.Module):
    """Pooled (B, I) -> channel (B, I), filter (B, O) and kernel (B, K) attentions of the authors' Qwen FDLinear.

    relu(RMSNorm(fc(pooled))) feeds three ``nn.Linear`` heads; ``att_multi * sigmoid(logit / temp)`` (or
    1 + tanh) for channel and filter, ``2 * sigmoid(logit / kernel_temp) / K`` for the kernel mixture (the
    authors' alpha lacks the K that :class:`FourierDynamicBase`'s has). The heads start at zero (neutral).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_kernels: int,
        reduction: float,
        temp: float,
        kernel_temp: float,
        att_multi: float,
        act: str,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_activation(act, "ksm_act")
        kw = factory_kwargs(device, dtype)
        hidden = max(int(in_features * reduction), 16)
        self.num_kernels, self.temp, self.kernel_temp, self.att_multi, self.act = (
            num_kernels,
            temp,
            kernel_temp,
            att_multi,
            act,
        )
        self.fc = AttentionLinear(in_features, hidden, bias=False, **kw)
        self.norm = RMSNorm(hidden, **kw)
        self.channel_fc = AttentionLinear(hidden, in_features, **kw)
        self.filter_fc = AttentionLinear(hidden, out_features, **kw)
        self.kernel_fc = AttentionLinear(hidden, num_kernels, **kw) if num_kernels > 1 else None
        self.reset_parameters()

    def heads(self) -> list[AttentionLinear]:
        return [h for h in (self.channel_fc, self.filter_fc, self.kernel_fc) if h is not None]

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.fc.weight, mode="fan_out", nonlinearity="relu")
        self.norm.reset_parameters()
        self.zero_heads_()

    @torch.no_grad()
    def zero_heads_(self) -> None:
        for head in self.heads():
            head.weight.zero_()
            head.bias.zero_()

    def forward(self, pooled: Tensor) -> Attentions:
        with torch.autocast(pooled.device.type, enabled=False):  # float32 for half layers, as every attention here
            z = F.relu(self.norm(self.fc(as_dtype(pooled, compute_dtype(pooled.dtype)))))
            channel = modulation(self.channel_fc(z), self.act, self.att_multi, temp=self.temp)
            filter_ = modulation(self.filter_fc(z), self.act, self.att_multi, temp=self.temp)
            kernel = (
                None
                if self.kernel_fc is None
                else (kernel_modulation(self.kernel_fc(z), self.act, self.num_kernels, self.kernel_temp))
            )
        return Attentions(kernel=kernel, channel=channel, filter=filter_)


class FDLinearQwen(TraceOnly, LinearFourierBase):
    """The authors' FDLinear for Qwen2-VL: input (..., in_features) -> (..., out_features).

    Its state_dict (``dft_weight``, ``bias``, ``KSM_Global.{fc, norm, channel_fc, filter_fc, kernel_fc}``,
    ``local_conv``) loads with ``strict=True`` and computes the authors' function to float rounding
    (``tests/golden/fdlinear_qwen.pt``). Three input forms, as in the authors' forward:

    * (B, N, in_features) and more dims: one sample per leading index, attentions from the mean over tokens;
    * (T, in_features) with ``cu_seqlens`` (an int tensor or a list of ints, (S + 1,), 0 = cu_seqlens[0] <= ...
      <= cu_seqlens[-1] = T): packed sequences, each segment pooled and given its own weight; empty segments are
      skipped, as in the authors' forward;
    * (T, in_features) without ``cu_seqlens``: each row is its own sample.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        kernel_num, param_ratio, reduction, kernel_temp, temp, att_multi, ksm_act, synthesis, freq_grouping:
            as :class:`FDConv` (defaults: the authors' Qwen file).
        ratio_scaling: ``'mean'`` (default: the P copies average, a converted layer equals its source) or
            ``'official'``, the authors' Qwen scaling for their P > 1 state_dicts. That file scales the kernel by
            one more P than their FDConv (alpha = min(I, O) // 2 * P with a kernel attention of 2 * sigmoid, not
            divided by P * K), so here ``'official'`` is P ** 2 times ``'mean'`` where FDConv's is P times.
        use_ksm_local: the local attention ``2 * sigmoid(local_conv(pooled))`` (a Conv1d along the input
            features, one output channel per output feature, no LayerNorm), off by default as in the authors' file.

    Shape:
        - Input: (..., in_features): (B, L, I) sequences, (N, I) rows (each its own sample), or packed (N, I)
            tokens with ``cu_seqlens`` (each segment a sample).
        - Output: (..., out_features), in the input's dtype.

    Differs from the authors' (docs/fdconv.md, "Checkpoints"), whose checkpoints load with ``strict=True`` and
    compute their function:
        - neutral start: the channel, filter and kernel heads at zero, so :meth:`from_linear` is exact;
        - ``param_ratio > 1`` averages the P copies unless ``ratio_scaling='official'`` (their P**2 scaling);
        - a malformed ``cu_seqlens`` raises a ``ValueError`` that names it.

    Examples:
        >>> layer = FDLinearQwen(64, 32)
        >>> layer(torch.randn(2, 10, 64)).shape
        torch.Size([2, 10, 32])
        >>> packed = torch.randn(7, 64)  # two sequences of 3 and 4 tokens, packed
        >>> layer(packed, cu_seqlens=torch.tensor([0, 3, 7])).shape
        torch.Size([7, 32])
    """

    KSM_Global: LinearKernelAttention
    official_ratio_power = 2  # the authors' Qwen alpha has P and their kernel attention no 1 / (P * K): P ** 2

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        kernel_num: int = 4,
        param_ratio: int = DEFAULTS.param_ratio,
        reduction: float = DEFAULTS.reduction,
        kernel_temp: float = DEFAULTS.kernel_temp,
        temp: float | None = DEFAULTS.temp,
        att_multi: float = DEFAULTS.att_multi,
        ksm_act: str = DEFAULTS.ksm_act,
        use_ksm_local: bool = False,
        synthesis: str = DEFAULTS.synthesis,
        freq_grouping: str = DEFAULTS.freq_grouping,
        ratio_scaling: str = DEFAULTS.ratio_scaling,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        in_features, out_features = self._set_features(in_features, out_features)
        o = FourierOptions(
            kernel_num=check_int(kernel_num, "kernel_num"),
            param_ratio=param_ratio,
            reduction=reduction,
            kernel_temp=kernel_temp,
            temp=temp,
            att_multi=att_multi,
            ksm_act=ksm_act,
            use_ksm_local=use_ksm_local,
            synthesis=synthesis,
            freq_grouping=freq_grouping,
            ratio_scaling=ratio_scaling,
        ).validated()
        self._build_spectrum(in_features, out_features, (1, 1), 1, o, device, dtype)
        self.KSM_Global = LinearKernelAttention(
            in_features,
            out_features,
            self.num_mixed,
            o.reduction,
            o.kernel_temp if o.temp is None else o.temp,
            o.kernel_temp,
            o.att_multi,
            o.ksm_act,
            device,
            dtype,
        )
        self.KSM_Local = None
        size = local_kernel_size(in_features)
        self.local_conv = (
            AttentionConv1d(1, out_features, size, padding=size // 2, bias=False, device=device, dtype=dtype)
            if use_ksm_local
            else None
        )
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation for weight and bias; attention heads and the local conv to zero."""
        self._reset_fourier(self.bias)
        if self.local_conv is not None:
            nn.init.zeros_(self.local_conv.weight)

    @torch.no_grad()
    def neutralise_(self) -> None:
        super().neutralise_()
        if self.local_conv is not None:
            self.local_conv.weight.zero_()

    def sample_weights(self, pooled: Tensor) -> Tensor:
        """Per-sample weights (S, out_features, in_features) (or (1, ...) without a kernel mixture) from pooled
        inputs (S, in_features).
        """
        att = self.KSM_Global(pooled)
        local = None
        if self.local_conv is not None:
            logits = self.local_conv(as_dtype(pooled[:, None], compute_dtype(self.dft_weight.dtype)))
            local = modulation(logits, self.KSM_Global.act, self.KSM_Global.att_multi)[..., None, None]
        return self.modulated(pooled, att, local=local).weight[..., 0, 0]

    def forward(self, x: Tensor, cu_seqlens: Tensor | Sequence[int] | None = None) -> Tensor:
        name = type(self).__name__
        check_features_last(x, self.in_features, name)
        if not x.numel():
            return self._empty_input(x)
        work = compute_dtype(x.dtype)
        if cu_seqlens is not None:
            bounds = _segment_bounds(cu_seqlens, x, name)
            segments = [x[a:b] for a, b in pairwise(bounds)]
            pooled = torch.stack([s.mean(0, dtype=work) for s in segments])
            weights = as_dtype(self.sample_weights(pooled), x.dtype).expand(len(segments), -1, -1)
            y = torch.cat([s @ w.t() for s, w in zip(segments, weights, strict=True)])
        elif x.dim() == 2:  # each row is its own sample
            y = (as_dtype(self.sample_weights(as_dtype(x, work)), x.dtype) @ x[:, :, None])[..., 0]
        else:
            tokens = x.reshape(x.shape[0], -1, self.in_features)
            weights = as_dtype(self.sample_weights(tokens.mean(1, dtype=work)), x.dtype)
            y = (tokens @ weights.transpose(1, 2)).reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + as_dtype(self.bias, y.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"{self._fourier_repr()}, local_conv={self.local_conv is not None}"
        )


def _segment_bounds(cu_seqlens: Tensor | Sequence[int], x: Tensor, layer: str) -> list[int]:
    """``cu_seqlens`` (a tensor or a sequence of ints) as the boundaries of the non-empty segments of the packed
    (T, C) x, or an error naming it; empty segments are skipped, as in the authors' forward (they hold no token).
    """
    if x.dim() != 2:
        raise ValueError(f"{layer}: packed sequences (cu_seqlens) need a 2-D (T, C) input, got {tuple(x.shape)}")
    if isinstance(cu_seqlens, Tensor):
        if cu_seqlens.is_floating_point() or cu_seqlens.is_complex():
            raise ArgumentTypeError(f"{layer}: cu_seqlens must hold integers, got dtype {cu_seqlens.dtype}")
        values: list = cu_seqlens.reshape(-1).tolist()
    elif isinstance(cu_seqlens, Sequence) and not isinstance(cu_seqlens, str | bytes):
        values = list(cu_seqlens)
    else:
        raise ArgumentTypeError(
            f"{layer}: cu_seqlens must be an int tensor or a sequence of ints, got {type(cu_seqlens).__name__}"
        )
    bounds = [check_int(b, "cu_seqlens element", 0) for b in values]
    if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != x.shape[0] or any(b > c for b, c in pairwise(bounds)):
        raise ValueError(f"{layer}: cu_seqlens must rise from 0 to the {x.shape[0]} tokens, got {bounds}")
    return [bounds[0]] + [c for b, c in pairwise(bounds) if c > b]
