"""Batch-as-groups convolution: one ``F.conv2d`` call applies a different kernel to every sample.

This is the shared engine of every dynamic convolution in freqdyn (FDConv, DY-Conv, CondConv, ODConv).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .conv_args import Padding, conv2d, explicit_padding, pair
from .device_dtype import as_dtype, reshaped, swapped
from .program_mode import compiling, exporting, memory_format_of


def batched_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: Padding,
    dilation: tuple[int, int],
    groups: int,
    out_scale: Tensor | None = None,
) -> Tensor:
    """Convolve each sample with its own kernel.

    Args:
        x: input (B, C, H, W).
        weight: per-sample kernels (B, O, C // groups, kh, kw), or a shared (1, O, C // groups, kh, kw).
        bias: per-sample (B, O), shared (O,), or None.
        stride: the conv's stride.
        padding: the conv's padding (its pairs, or ``'same'`` / ``'valid'``).
        dilation: the conv's dilation.
        groups: the conv's groups (per sample).
        out_scale: optional per-sample output-channel factors (B, O), applied before the bias.

    Returns:
        (B, O, H', W').

    Per-sample kernels run as one grouped convolution over the batch folded into channels
    (``groups = B * groups``). ONNX stores a conv's groups as a constant, so while tracing or exporting they run as
    unfold + batched matmul instead, and the exported graph takes any batch size. Compiled, the conv is one opaque
    operator (:func:`per_sample_conv2d`): inductor's conv lowering would specialise the groups (a recompilation per
    batch size), and its unfold + matmul ran 1.5-3x slower than eager. While tracing or exporting even a
    (1, ...) kernel takes that path, expanded to the batch: traced at batch 1 (ultralytics' export), a per-sample
    kernel has that shape too, and a plain conv would apply the traced sample's kernel to every sample.
    """
    if out_scale is not None:
        y = batched_conv2d(x, weight, None, stride, padding, dilation, groups)
        return _plus_bias(y * as_dtype(out_scale.view(*out_scale.shape, 1, 1), y.dtype), bias)
    batch, channels, height, width = x.shape
    out_channels = weight.shape[1]
    if exporting():  # traced at batch 1, a (1, ...) kernel may be that sample's own: expand it to the batch
        y = unfold_conv2d(x, weight.expand(batch, *weight.shape[1:]), stride, padding, dilation, groups)
        return _plus_bias(y, bias)
    if compiling():  # one opaque operator: inductor's conv lowering would fix B (groups = B), its unfold is slow
        x, pads = _numeric_padding(x, (weight.shape[-2], weight.shape[-1]), padding, dilation)
        return _plus_bias(per_sample_conv2d(x, weight, [*stride], [*pads], [*dilation], groups), bias)
    if weight.shape[0] == 1:
        shared_bias = bias if bias is None or bias.dim() == 1 else None
        y = conv2d(x, weight[0], shared_bias, stride, padding, dilation, groups)
        return y if shared_bias is not None else _plus_bias(y, bias)
    if groups == 1 and _unpadded_pointwise(weight, padding, dilation):
        return _plus_bias(_pointwise(x, weight, stride), bias)
    if memory_format_of(x) == torch.channels_last:
        # channels-last: fold to (1, B*C, H, W) with (H, W, B, C) memory, the layout a channels-last grouped
        # conv reads; the output comes back as (B, O, H', W') channels-last. The kernels are copied to plain
        # contiguous strides: with a channels-last input, torch 2.14's CPU conv returns wrong float32 outputs for
        # a (.., kh, 1) kernel view whose size-1 last dim has stride 1 (as FDConv's kernels have).
        folded = x.permute(2, 3, 0, 1).reshape(1, height, width, batch * channels).permute(0, 3, 1, 2)
        kernels = weight.reshape(batch * out_channels, *weight.shape[2:]).clone(memory_format=torch.contiguous_format)
        y = conv2d(folded, kernels, None, stride, padding, dilation, groups * batch)
        out_h, out_w = y.shape[-2:]
        y = y[0].permute(1, 2, 0).reshape(out_h, out_w, batch, out_channels).permute(2, 3, 0, 1)
        return _plus_bias(y, bias).contiguous(memory_format=torch.channels_last)
    folded, kernels = _folded(x, weight)
    # the bias added to the output: fewer ops than one folded to the batch (B * O) for the conv
    y = conv2d(folded, kernels, None, stride, padding, dilation, groups * batch)
    return _plus_bias(y.view(batch, out_channels, y.shape[-2], y.shape[-1]), bias)


def _unpadded_pointwise(weight: Tensor, padding: Padding, dilation: tuple[int, int]) -> bool:
    """Whether the per-sample kernels (B, O, C, kh, kw) are 1x1 with no padding."""
    return weight.shape[-2:] == (1, 1) and explicit_padding(padding, (1, 1), dilation) == [0, 0, 0, 0]


def _folded(x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """x (B, C, H, W) as (1, B * C, H, W) and weight (B, O, C / g, kh, kw) as (B * O, C / g, kh, kw): the input and
    the kernels of the ``groups=B * g`` conv (a non-contiguous x is copied).
    """
    batch, channels, height, width = x.shape
    return reshaped(x, 1, batch * channels, height, width), reshaped(weight, -1, *weight.shape[2:])


def _pointwise(x: Tensor, weight: Tensor, stride: tuple[int, int]) -> Tensor:
    """Per-sample 1x1 convolution as one bmm: x (B, C, H, W), weight (B, O, C, 1, 1) -> (B, O, H', W'), in x's
    memory format. A ``groups=B`` 1x1 conv takes the CPU's slow path, one conv per sample (its op count grows with
    B: 31 calls at B=2, 109 at B=8), and the bmm ran 1.2-2.3x faster (issue 30).
    """
    channels_last = memory_format_of(x) == torch.channels_last
    if stride != (1, 1):
        x = x[:, :, :: stride[0], :: stride[1]]
    batch, channels, height, width = x.shape
    kernels = reshaped(weight, batch, weight.shape[1], channels)  # (B, O, C)
    if channels_last:  # pixels as rows: (B, HW, C) @ (B, C, O), a channels-last output
        rows = torch.bmm(reshaped(x.permute(0, 2, 3, 1), batch, height * width, channels), kernels.transpose(1, 2))
        return rows.view(batch, height, width, -1).permute(0, 3, 1, 2)
    return torch.bmm(kernels, reshaped(x, batch, channels, height * width)).view(batch, -1, height, width)


def batched_conv2d_grads(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: Padding,
    dilation: tuple[int, int],
    need_x: bool,
    need_weight: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of x (B, C, H, W) and of the per-sample kernels weight (B, O, C, kh, kw) from ``grad`` (B, O, H',
    W'), that of ``batched_conv2d(x, weight, None, stride, padding, dilation, 1)``, without running that forward
    again: two bmm for a stride-1 1x1 kernel on an NCHW x, one convolution backward over the folded batch for a
    numeric padding (also inside an operator, where autograd does not record); a ``'same'`` / ``'valid'`` padding
    differentiates a rerun of the forward.
    """
    batch, channels, height, width = x.shape
    out_channels = weight.shape[1]
    contiguous = memory_format_of(x) == torch.contiguous_format and not isinstance(padding, str)
    if contiguous and stride == (1, 1) and _unpadded_pointwise(weight, padding, dilation):
        kernels = reshaped(weight, batch, out_channels, channels)
        rows, grad_rows = reshaped(x, batch, channels, height * width), reshaped(grad, batch, out_channels, -1)
        grad_x = torch.bmm(swapped(kernels), grad_rows).view(x.shape) if need_x else None
        grad_w = torch.bmm(grad_rows, swapped(rows)).view(weight.shape) if need_weight else None
        return grad_x, grad_w
    if not isinstance(padding, str):  # (a channels-last x is copied to fold it)
        return _folded_grads(grad, x, weight, stride, pair(padding, "padding"), dilation, 1, need_x, need_weight)
    with torch.enable_grad():
        inputs = (x.detach().requires_grad_(need_x), weight.detach().requires_grad_(need_weight))
        y = batched_conv2d(inputs[0], inputs[1], None, stride, padding, dilation, 1)
        wanted = [t for t, need in zip(inputs, (need_x, need_weight), strict=True) if need]
        found = iter(torch.autograd.grad(y, wanted, grad))
    return (next(found) if need_x else None), (next(found) if need_weight else None)


def _folded_grads(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    need_x: bool,
    need_weight: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of x (B, C, H, W) and weight (B, O, C // groups, kh, kw), in NCHW and contiguous layouts, by one
    convolution backward over the batch folded into the groups (a non-contiguous x is copied to fold it).
    """
    folded, kernels = _folded(x, weight)
    grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
        reshaped(grad, 1, kernels.shape[0], *grad.shape[2:]),
        folded,
        kernels,
        None,
        stride,
        padding,
        dilation,
        False,
        (0, 0),
        x.shape[0] * groups,
        (need_x, need_weight, False),
    )
    return (grad_x.view(x.shape) if need_x else None), (grad_w.view(weight.shape) if need_weight else None)


def unfold_conv2d(
    x: Tensor, weight: Tensor, stride: tuple[int, int], padding: Padding, dilation: tuple[int, int], groups: int
) -> Tensor:
    """Per-sample convolution as unfold + bmm: x (B, C, H, W), weight (B, O, C // groups, kh, kw) -> (B, O, H', W')."""
    kh, kw = int(weight.shape[-2]), int(weight.shape[-1])  # constants for F.unfold (the TorchScript exporter)
    x, pads = _numeric_padding(x, (kh, kw), padding, dilation)
    batch, _, height, width = x.shape
    out_channels, per_group = weight.shape[1], weight.shape[2]
    out_h, out_w = _output_size(height, width, (kh, kw), stride, pads, dilation)
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=pads, stride=stride)  # (B, C * kh * kw, L)
    cols = cols.reshape(batch * groups, per_group * kh * kw, out_h * out_w)
    kernels = weight.reshape(batch * groups, out_channels // groups, per_group * kh * kw)
    return torch.bmm(kernels, cols).reshape(batch, out_channels, out_h, out_w)


def _numeric_padding(
    x: Tensor, kernel: tuple[int, int], padding: Padding, dilation: tuple[int, int]
) -> tuple[Tensor, tuple[int, int]]:
    """x and the conv's padding as (ph, pw): a string padding (``'same'``, ``'valid'``) is applied to x by ``F.pad``,
    leaving (0, 0).
    """
    if isinstance(padding, str):
        return F.pad(x, explicit_padding(padding, kernel, dilation)), (0, 0)
    return x, pair(padding, "padding")


def _output_size(
    height: int,
    width: int,
    kernel: tuple[int, int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, int]:
    """(H', W') of a conv of an (H, W) map with numeric padding (ph, pw)."""
    out_h = (height + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (width + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    return out_h, out_w


def _plus_bias(y: Tensor, bias: Tensor | None) -> Tensor:
    """y (B, O, H', W') plus a per-sample (B, O) or shared (O,) bias, in y's dtype."""
    return y if bias is None else y + as_dtype(reshaped(bias, -1, y.shape[1], 1, 1), y.dtype)


@torch.library.custom_op("freqdyn::per_sample_conv2d", mutates_args=())
def per_sample_conv2d(
    x: Tensor, weight: Tensor, stride: list[int], padding: list[int], dilation: list[int], groups: int
) -> Tensor:
    """:func:`batched_conv2d` of x (B, C, H, W) with per-sample kernels (B, O, C // groups, kh, kw), no bias, numeric
    ``padding`` (ph, pw), as one operator: ``torch.compile`` keeps it opaque, so it runs the vendor's grouped conv
    (or the bmm of 1x1 kernels) for any batch size, as eager does; a shared (1, O, C // groups, kh, kw) kernel runs
    the plain conv, whose inductor lowering would fix H and W in training (a recompilation per size).
    """
    return batched_conv2d(x, weight, None, _two(stride), _two(padding), _two(dilation), groups)


@per_sample_conv2d.register_fake
def _(x: Tensor, weight: Tensor, stride: list[int], padding: list[int], dilation: list[int], groups: int) -> Tensor:
    batch, _, height, width = x.shape
    out_h, out_w = _output_size(height, width, (weight.shape[-2], weight.shape[-1]), stride, padding, dilation)
    out = x.new_empty((batch, weight.shape[1], out_h, out_w))
    return out.contiguous(memory_format=memory_format_of(x))


@torch.library.custom_op("freqdyn::per_sample_conv2d_backward", mutates_args=())
def per_sample_conv2d_backward(
    grad: Tensor,
    x: Tensor,
    weight: Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    need: list[bool],
) -> list[Tensor]:
    """The gradients of x and weight of :func:`per_sample_conv2d` from its output's ``grad``, in their layouts; an
    empty tensor in place of one ``need`` leaves out. An operator runs below autograd, so no rerun of the forward:
    the convolution backward of a shared kernel, :func:`batched_conv2d_grads` for plain kernels (two bmm for an
    unpadded 1x1 kernel on an NCHW map), else one convolution backward over the folded batch.
    """
    need_x, need_weight = need
    args = (_two(stride), _two(padding), _two(dilation))
    if weight.shape[0] == 1:
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad, x, weight[0], None, *args, False, (0, 0), groups, (need_x, need_weight, False)
        )
        grad_w = None if grad_w is None else grad_w[None]
    elif groups == 1:  # (which folds a channels-last map too)
        grad_x, grad_w = batched_conv2d_grads(grad, x, weight, *args, need_x, need_weight)
    else:
        grad_x, grad_w = _folded_grads(grad, x, weight, *args, groups, need_x, need_weight)
    return [
        x.new_empty(0) if grad_x is None else grad_x.contiguous(memory_format=memory_format_of(x)),
        weight.new_empty(0) if grad_w is None else grad_w.contiguous(),
    ]


@per_sample_conv2d_backward.register_fake
def _(grad: Tensor, x: Tensor, weight: Tensor, *args: object) -> list[Tensor]:
    need = cast(list[bool], args[-1])
    return [
        x.new_empty(x.shape).contiguous(memory_format=memory_format_of(x)) if need[0] else x.new_empty(0),
        weight.new_empty(weight.shape) if need[1] else weight.new_empty(0),
    ]


def _setup_context(ctx, inputs: tuple, output: Tensor) -> None:
    x, weight, *ctx.args = inputs
    ctx.save_for_backward(x, weight)


def _backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
    x, weight = ctx.saved_tensors
    need = [bool(n) for n in ctx.needs_input_grad[:2]]
    grad_x, grad_w = per_sample_conv2d_backward(grad, x, weight, *ctx.args, need)
    return (grad_x if need[0] else None, grad_w if need[1] else None, None, None, None, None)


per_sample_conv2d.register_autograd(_backward, setup_context=_setup_context)


def _two(values: list[int]) -> tuple[int, int]:
    return values[0], values[1]
