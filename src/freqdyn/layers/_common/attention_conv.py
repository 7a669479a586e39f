"""The small convolutions and linear maps inside attention branches, kept out of reach of network-wide rules.

Every attention branch calls these as modules, so forward hooks and pre-hooks on them fire and hook-based tools
(``torch.nn.utils.prune``, activation capture, FLOP counters) see them; they compute in their input's dtype
(attentions of half-precision layers run in float32).
"""

from __future__ import annotations

import functools
import math
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .device_dtype import as_dtype, factory_kwargs, narrowed, reshaped, swapped, zeroed
from .program_mode import may_use_custom_kernels
from .second_order import differentiable_backward, plain_grads


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
        conv of a (B, in, 1, 1) map, as one matmul); in x's dtype.
        """
        bias = None if self.bias is None else as_dtype(self.bias, x.dtype)
        weight = as_dtype(self.weight, x.dtype)
        if x.dim() == 2:
            if self.kernel_size != (1, 1) or self.groups != 1:
                raise ValueError(
                    f"{type(self).__name__}: a 2-D (B, C) input needs a 1x1 conv without groups, this "
                    f"one has kernel_size={self.kernel_size}, groups={self.groups}"
                )
            return F.linear(x, reshaped(weight, weight.shape[0], -1), bias)
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
    attentions of half-precision layers run in float32); same parameters, keys and initialisation.
    """

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else as_dtype(self.bias, x.dtype)
        return F.linear(x, as_dtype(self.weight, x.dtype), bias)


def sliding_windows(x: Tensor, size: int, pad: int) -> Tensor:
    """x (B, L) -> its zero-padded windows (B * L, S), row (b, i) = x[b, i - pad .. i - pad + S - 1] (``pad`` zeros
    in front, S - 1 - pad behind), laid out for a matmul with the (S, Q) taps: one copy.
    """
    batch, length = x.shape
    options = factory_kwargs(x.device, x.dtype)
    rows = length + size - 1
    padded = zeroed(batch, rows, **options)
    narrowed(padded, 1, pad, length).copy_(x)
    windows = torch.empty(batch * length, size, **options)
    windows.view(batch, length, size).copy_(padded.as_strided((batch, length, size), (rows, 1, 1)))
    return windows


def taps_matrix(weight: Tensor) -> Tensor:
    """The (S, Q) view of a (Q, 1, S) conv1d weight."""
    return weight.as_strided((weight.shape[-1], weight.shape[0]), (weight.stride(2), weight.stride(0)))


def sliding_taps_grads(
    grad: Tensor, windows: Tensor, weight: Tensor, batch: int, pad: int, need_x: bool, need_weight: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of x (B, L) and weight (Q, 1, S) from ``grad`` (B * L, Q) (any strides), that of
    ``windows @ taps_matrix(weight)`` with the ``windows`` of :func:`sliding_windows`: two matmuls and one strided
    sum.
    """
    count = grad.shape[0]
    size, length = weight.shape[-1], count // batch
    # both matmuls are taken transposed, with the S taps as their rows: BLAS runs a product with S (= 3..7)
    # columns several times slower (MKL: 2-7x at 256-512 channels)
    grad_x = grad_weight = None
    if need_x:
        # x[b, j] collects the window gradients (j + pad - t, t): in a buffer front-padded by S - 1 - pad
        # columns, taps first, the entries (S - 1 - u, j + u) for u = S - 1 - t, which are a strided view
        rows = length + size - 1
        padded = zeroed(size, batch, rows, dtype=grad.dtype, device=grad.device)
        spread = torch.mm(taps_matrix(weight), swapped(grad)).view(size, batch, length)
        narrowed(padded, 2, size - 1 - pad, length).copy_(spread)
        grad_x = padded.as_strided((batch, length, size), (rows, 1, batch * rows - 1), size - 1).sum(2)
    if need_weight:
        product = torch.mm(windows.as_strided((size, count), (1, size)), grad)  # (S, Q)
        grad_weight = product.as_strided(weight.shape, (1, 1, product.shape[1]))
    return grad_x, grad_weight


class _SlidingTaps(torch.autograd.Function):
    """x (B, L), weight (Q, 1, S), bias (Q,) or None -> (B, L, Q), out[b, i, q] = sum_t x[b, i + t - pad] weight[q,
    0, t] (+ bias[q]), zero padded (``pad`` in front, S - 1 - pad behind): one matmul over sliding windows. Its
    backward is two matmuls and one strided sum (the windows are saved: B * L * S values), where autograd's of the
    window view took four times the ops.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, pad: int) -> Tensor:
        windows = sliding_windows(x, weight.shape[-1], pad)
        taps = taps_matrix(weight)
        out = torch.mm(windows, taps) if bias is None else torch.addmm(bias, windows, taps)
        ctx.save_for_backward(windows, x, weight, bias)
        ctx.pad, ctx.has_bias = pad, bias is not None
        return out.view(x.shape[0], x.shape[1], -1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        windows, x, weight, bias = ctx.saved_tensors
        if differentiable_backward():
            pad = ctx.pad
            plain = functools.partial(_plain_sliding_taps, pad=pad)
            return (*plain_grads(plain, (x, weight, bias), ctx.needs_input_grad[:3], [grad]), None)
        batch, length, out = grad.shape
        grad = grad.reshape(batch * length, out)
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_x, grad_weight = sliding_taps_grads(grad, windows, weight, batch, ctx.pad, need_x, need_weight)
        grad_bias = grad.sum(0) if ctx.has_bias and need_bias else None
        return grad_x, grad_weight, grad_bias, None


def _plain_sliding_taps(x: Tensor, weight: Tensor, bias: Tensor | None, pad: int) -> Tensor:
    """:class:`_SlidingTaps` as a plain conv1d (traces, ``torch.func``, and a backward that is differentiated
    again): (B, L, Q).
    """
    return F.conv1d(x[:, None], weight, bias, padding=pad).transpose(1, 2)


class AttentionConv1d(nn.Conv1d):
    """``nn.Conv1d`` with one input channel along the channel axis of a pooled vector: x (B, 1, L) ->
    (B, out_channels, L), or in the channels-last form that KSM-Local reads, x (B, L) -> (B, L, out_channels); in
    x's dtype. One matmul over sliding windows (oneDNN is slow for this shape) with a short hand-written backward;
    a plain conv1d while tracing, exporting or under ``torch.func`` transforms. Same parameters, keys and
    initialisation as ``nn.Conv1d``; stride 1, odd kernel, 'same' zero padding.
    """

    def forward(self, x: Tensor) -> Tensor:
        weight = as_dtype(self.weight, x.dtype)
        bias = None if self.bias is None else as_dtype(self.bias, x.dtype)
        pad = cast(int, self.padding[0])
        if x.dim() == 2:
            if may_use_custom_kernels():
                return _SlidingTaps.apply(x, weight, bias, pad)
            return _plain_sliding_taps(x, weight, bias, pad)
        if x.shape[1] != 1 or not may_use_custom_kernels():
            return F.conv1d(x, weight, bias, padding=pad)
        return _SlidingTaps.apply(x.reshape(x.shape[0], x.shape[2]), weight, bias, pad).transpose(1, 2)
