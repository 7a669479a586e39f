"""FDConv's training forward as one ``autograd.Function``: the per-sample kernels synthesised from the Fourier
weight, modulated by KSM-Local and the spatial, channel and filter attentions, and applied to the input (on the
feature branch the channel attention scales the input and the filter attention the output instead).

Autograd of the same ops either keeps every kernel-sized factor for backward (B * O * I * kh * kw values each)
or, under a checkpoint, replays the whole forward in backward, the conv included. This Function saves only the
small inputs (the input map, the attentions, the KSM-Local windows) and, in backward, rebuilds the synthesised
kernel, the local factor and the group map (or keeps those three where they are small: ``keep``), takes the
conv's gradients without running it again, and the factors' gradients as a few products and batched matmuls: a
fixed short sequence of ops whatever the batch, width or map size (issue 30). Under ``torch.compile`` the same work
is one opaque custom operator with its backward another (:func:`kernel_conv_operator`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from .._common.attention_conv import sliding_taps_grads, sliding_windows, taps_matrix
from .._common.batched_conv import _numeric_padding, _output_size, batched_conv2d, batched_conv2d_grads
from .._common.conv_args import Padding
from .._common.device_dtype import as_dtype, reshaped, scalar, swapped
from .._common.program_mode import compiling, memory_format_of
from .._common.second_order import differentiable_backward, plain_grads
from .spectrum import matrix_to_weight
from .synthesis import group_map, spectral_synthesis, spectral_synthesis_grads

# kernel-sized tensors the Function keeps per sample with ``keep``: the synthesis, KSM-Local, the group map (a half)
KEPT_BY_FUNCTION = 2.5
KEPT_ANYWAY = 2**20  # values (4 MB in float32) small enough to keep for backward whatever the input's size


def keeps_kernels(batch: int, kernel_values: int, input_values: int) -> bool:
    """Whether the Function keeps the synthesised kernel, the local factor and the group map for backward (``keep``)
    rather than rebuild them: when those B * 2.5 * ``kernel_values`` values are no more than the input
    (B * ``input_values``), which the conv keeps anyway, or than :data:`KEPT_ANYWAY` (a rebuild costs a synthesis
    and about 40 dispatched ops to save a few MB).
    """
    kept = KEPT_BY_FUNCTION * batch * kernel_values
    return kept <= batch * input_values or kept <= KEPT_ANYWAY


@dataclass(frozen=True)
class KernelPlan:
    """What :func:`kernel_conv` needs besides tensors that take gradients."""

    index: Tensor  # (rows * width,) int64: freq_group flattened
    scale: float  # kappa's multiplier: alpha, times KSM-Local's gain (which its factor leaves out)
    kernel_num: int
    size: tuple[int, int]  # the kernel matrix (O * kh, I * kw)
    kernel_hw: tuple[int, int]
    local_pad: int  # KSM-Local's conv1d padding
    local_act: str  # 'sigmoid' or 'tanh' (1 + tanh); the gain is in ``scale``
    stride: tuple[int, int]
    padding: Padding
    dilation: tuple[int, int]
    keep: bool  # keep the synthesised kernel, local factor and group map for backward instead of rebuilding them
    on_features: bool  # the channel attention scales the input and the filter attention the output
    linear: bool = False  # x is tokens (B, N, I), the kernel (B, O, I, 1, 1) a per-sample linear map


def kernel_conv(
    x: Tensor,
    kappa: Tensor,
    dft_weight: Tensor,
    normed: Tensor | None,
    taps: Tensor | None,
    spatial: Tensor | None,
    channel: Tensor | None,
    filter_: Tensor | None,
    plan: KernelPlan,
) -> Tensor:
    """conv(x, W_b) per sample b, without bias: x (B, I, H, W) padded as the conv needs -> (B, O, H', W'), in the
    dtype autocast gives a conv (else x's).

    W = S * L * spatial * channel * filter, with S the FFT-route synthesis of kappa (B, P * K) times
    ``plan.scale`` (the work dtype, to which dft_weight is converted), L the KSM-Local factor
    ``act(windows(normed) @ taps)`` (``normed`` (B, I) the layer-normed pooled input, ``taps`` (Q, 1, S) its conv1d
    weight; both ``None`` without KSM-Local) and the attentions spatial (B, kh * kw), channel (B, I), filter (B, O)
    (each ``None`` when off). With ``plan.on_features`` the channel attention scales x and the filter attention the
    output instead. One group only.
    """
    if compiling():  # a string padding applied to x first
        if not plan.linear:
            x, pads = _numeric_padding(x, plan.kernel_hw, plan.padding, plan.dilation)
            plan = dataclasses.replace(plan, padding=pads)
        tensors = (x, kappa, dft_weight, normed, taps, spatial, channel, filter_)
        return kernel_conv_operator(*tensors, plan.index, plan.scale, plan.local_act, _packed(plan), _conv_dtype(x))
    return _KernelConv.apply(x, kappa, dft_weight, normed, taps, spatial, channel, filter_, plan)


def _conv_dtype(x: Tensor) -> torch.dtype:
    """The dtype of the conv of x: autocast's where it is on (and x is not float64), else x's."""
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype != torch.float64:
        return torch.get_autocast_dtype(device)
    return x.dtype


def _scaled(kappa: Tensor, plan: KernelPlan) -> Tensor:
    """kappa times ``plan.scale``, which also makes a (strided) head output contiguous for the gather of
    :func:`~freqdyn.layers.fdconv.synthesis.group_map`.
    """
    return kappa * scalar(plan.scale, kappa)


def _windows(normed: Tensor | None, taps: Tensor | None, plan: KernelPlan) -> Tensor | None:
    """KSM-Local's sliding windows (B * I, S) of the normed pooled input (B, I), or None without KSM-Local."""
    return None if normed is None or taps is None else sliding_windows(normed, taps.shape[-1], plan.local_pad)


def _local(windows: Tensor, taps: Tensor, act: str, inplace: bool = True) -> Tensor:
    """The KSM-Local factor (B * I, O * kh * kw) from its windows (``inplace=False``: differentiable ops)."""
    logits = torch.mm(windows, taps_matrix(taps))
    if not inplace:
        return torch.sigmoid(logits) if act == "sigmoid" else torch.tanh(logits) + scalar(1.0, logits)
    if act == "sigmoid":
        return logits.sigmoid_()
    return logits.tanh_().add_(scalar(1.0, logits))


def _scales(spatial: Tensor | None, fc: Tensor | None, shape: torch.Size) -> list[Tensor]:
    """The kernel's factors besides S and L, broadcastable to ``shape`` (B, O, I, kh, kw): fc (B, O, I, 1, 1) (the
    filter times the channel attention, :func:`_filter_channel`) and spatial (B, kh * kw), where present.
    """
    batch, _, _, kh, kw = shape
    scales = [] if fc is None else [fc]
    return scales if spatial is None else [*scales, spatial.view(batch, 1, 1, kh, kw)]


def _filter_channel(channel: Tensor | None, filter_: Tensor | None, shape: torch.Size) -> Tensor | None:
    """filter (B, O) times channel (B, I) as a (B, O, I, 1, 1) tensor (an expanded view where one is off), or
    None.
    """
    batch, out_channels, in_channels = shape[:3]
    if filter_ is None:
        if channel is None:
            return None
        return channel.view(batch, 1, in_channels, 1, 1).expand(batch, out_channels, -1, -1, -1)
    if channel is None:
        return filter_.view(batch, out_channels, 1, 1, 1).expand(batch, -1, in_channels, -1, -1)
    return filter_.view(batch, out_channels, 1, 1, 1) * channel.view(batch, 1, in_channels, 1, 1)


def _apply(x: Tensor, kernel: Tensor, plan: KernelPlan, strided: bool = True) -> Tensor:
    """The per-sample conv of x (B, I, H, W) with kernel (B, O, I, kh, kw), or with ``plan.linear`` the per-sample
    linear map of tokens x (B, N, I) by kernel (B, O, I, 1, 1): (B, N, O). ``strided=False``: differentiable views.
    """
    if plan.linear:
        matrix = kernel.view(kernel.shape[:3])
        return torch.bmm(x, swapped(matrix) if strided else matrix.transpose(1, 2))
    return batched_conv2d(x, kernel, None, plan.stride, plan.padding, plan.dilation, 1)


def _apply_grads(
    grad: Tensor, x: Tensor, kernel: Tensor, plan: KernelPlan, need_x: bool
) -> tuple[Tensor | None, Tensor]:
    """Gradients of x and kernel from that of :func:`_apply`'s output."""
    if plan.linear:
        matrix = kernel.view(kernel.shape[:3])
        grad_x = torch.bmm(grad, matrix) if need_x else None
        return grad_x, torch.bmm(swapped(grad), x).view(kernel.shape)
    grad_x, grad_kernel = batched_conv2d_grads(grad, x, kernel, plan.stride, plan.padding, plan.dilation, need_x, True)
    return grad_x, cast(Tensor, grad_kernel)


# The views below are single ``as_strided`` calls where a reshape and a transpose dispatch four ops. They serve only
# tensors autograd does not record (as_strided's own backward is costly): the plain path takes the usual views.


def _kernel_view(matrix: Tensor, kernel_hw: tuple[int, int], strided: bool = True) -> Tensor:
    """A contiguous kernel matrix (B, O * kh, I * kw) as the kernel (B, O, I, kh, kw): :func:`matrix_to_weight`."""
    if not strided:
        return matrix_to_weight(matrix, kernel_hw)
    batch, rows, cols = matrix.shape
    kh, kw = kernel_hw
    return matrix.as_strided((batch, rows // kh, cols // kw, kh, kw), (rows * cols, kh * cols, kw, cols, 1))


def _local_view(local: Tensor, shape: torch.Size, strided: bool = True) -> Tensor:
    """The contiguous KSM-Local factor (B * I, O * kh * kw) as a (B, O, I, kh, kw) view."""
    batch, out_channels, in_channels, kh, kw = shape
    if not strided:
        return local.view(batch, in_channels, out_channels, kh, kw).transpose(1, 2)
    row = out_channels * kh * kw
    return local.as_strided(tuple(shape), (in_channels * row, kh * kw, row, kw, 1))


def _channels(channel: Tensor, like: Tensor) -> Tensor:
    """channel (B, I) as a (B, I, 1, 1) factor of a map, in the map's dtype."""
    return as_dtype(channel, like.dtype).view(*channel.shape, 1, 1)


class _KernelConv(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        kappa: Tensor,
        dft_weight: Tensor,
        normed: Tensor | None,
        taps: Tensor | None,
        spatial: Tensor | None,
        channel: Tensor | None,
        filter_: Tensor | None,
        plan: KernelPlan,
    ) -> Tensor:
        conv_dtype = _conv_dtype(x)
        windows = _windows(normed, taps, plan)
        scaled = _scaled(kappa, plan)
        y, kmap, matrix, local = _forward(
            x, scaled, dft_weight, windows, taps, spatial, channel, filter_, plan, conv_dtype
        )
        # kept, or what rebuilds them: the scaled kappa is (B, P * K) values
        kept = (None, kmap, matrix, local) if plan.keep else (scaled, None, None, None)
        ctx.save_for_backward(x, kappa, normed, windows, taps, spatial, channel, filter_, *kept)
        # the parameter itself, not saved: saved tensors count as memory kept for backward, and it is there anyway
        # (its float32 copy for a half layer is remade in backward); autograd's version check, by hand
        ctx.dft_weight, ctx.dft_version = dft_weight, dft_weight._version
        ctx.plan, ctx.conv_dtype = plan, conv_dtype
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, kappa, normed, windows, taps, spatial, channel, filter_, scaled, kmap, matrix, local = ctx.saved_tensors
        if ctx.dft_weight._version != ctx.dft_version:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an inplace operation: "
                f"FDConv's dft_weight is at version {ctx.dft_weight._version}; expected version {ctx.dft_version}"
            )
        plan: KernelPlan = ctx.plan
        if differentiable_backward():
            inputs = (x, kappa, ctx.dft_weight, normed, taps, spatial, channel, filter_)
            plain = functools.partial(_plain, plan=plan, conv_dtype=ctx.conv_dtype)
            return (*plain_grads(plain, inputs, ctx.needs_input_grad[:8], [grad]), None)
        dft_weight = as_dtype(ctx.dft_weight, kappa.dtype)
        saved = (x, dft_weight, normed, windows, taps, spatial, channel, filter_, scaled, kmap, matrix, local)
        return (*_grads(grad, *saved, plan, ctx.conv_dtype, ctx.needs_input_grad[:8]), None)


def _grads(
    grad: Tensor,
    x: Tensor,
    dft_weight: Tensor,
    normed: Tensor | None,
    windows: Tensor | None,
    taps: Tensor | None,
    spatial: Tensor | None,
    channel: Tensor | None,
    filter_: Tensor | None,
    scaled: Tensor | None,
    kmap: Tensor | None,
    matrix: Tensor | None,
    local: Tensor | None,
    plan: KernelPlan,
    conv_dtype: torch.dtype,
    need: tuple[bool, ...],
) -> tuple[Tensor | None, ...]:
    """The gradients of :func:`kernel_conv`'s eight tensor inputs (None where ``need`` leaves one out) from its
    output's ``grad``: dft_weight in the work dtype, the KSM-Local ``windows``, and either the kept group map, kernel
    matrix and local factor, or the ``scaled`` kappa that rebuilds them.
    """
    if any(step == 0 and size > 1 for step, size in zip(grad.stride(), grad.shape, strict=True)):
        # an expanded gradient (a summed output's) would make bmm loop over samples; empty + copy_ dispatches two
        # calls where contiguous() dispatches five
        grad = torch.empty(grad.shape, dtype=grad.dtype, device=grad.device).copy_(grad)
    with torch.autocast(x.device.type, enabled=False):
        if kmap is None:
            kmap = group_map(cast(Tensor, scaled), plan.index, plan.kernel_num)
        if matrix is None:
            matrix = spectral_synthesis(kmap, dft_weight, plan.size)
            local = None if windows is None or taps is None else _local(windows, taps, plan.local_act)
        synth = _kernel_view(matrix, plan.kernel_hw)
        shape = synth.shape
        batch, out_channels, in_channels, kh, kw = shape
        local_view = None if local is None else _local_view(local, shape)
        # on the feature branch, the filter attention on the output is that factor of the kernel in backward:
        # the conv's kernel gradient then holds what its gradient needs (no output map kept for it)
        on_input = channel if plan.on_features else None
        fc = _filter_channel(None if plan.on_features else channel, filter_, shape)
        scales = _scales(spatial, fc, shape)
        # kernel-sized tensors (B * O * I * kh * kw values) are made one at a time and dropped as soon as they are
        # used: with the synthesis and the local factor, at most four are alive (the peak memory of a step)
        kernel = _modulated(synth, local_view, scales)
        features = x if on_input is None else x * _channels(on_input, x)
        grad_features, grad_kernel = _apply_grads(
            grad,
            as_dtype(features, conv_dtype),
            as_dtype(kernel, conv_dtype),
            plan,
            need[0] or (on_input is not None and need[6]),
        )
        del kernel, features
        grad_kernel = as_dtype(grad_kernel, synth.dtype)  # a fresh tensor: updated in place below
        grad_spatial, grad_channel, grad_filter = _factor_grads(
            grad_kernel, synth, local_view, spatial, None if plan.on_features else channel, filter_, fc, need[5:8]
        )
        grad_x = None if grad_features is None else as_dtype(grad_features, x.dtype)
        if on_input is not None and grad_x is not None:
            grad_channel = (grad_x * x).sum((2, 3)) if need[6] else None
            grad_x = grad_x * _channels(on_input, x) if need[0] else None
        for factor in scales:  # the gradient of S * L
            grad_kernel.mul_(factor)
        grad_normed = grad_taps = None
        if local is not None and windows is not None and taps is not None and (need[3] or need[4]):
            # L's gradient in the (B, I, O, kh, kw) layout of its taps
            flat = torch.empty(batch * in_channels, out_channels * kh * kw, dtype=synth.dtype, device=synth.device)
            torch.mul(grad_kernel, synth, out=_local_view(flat, shape))
            if plan.local_act == "sigmoid":
                grad_logits = torch.ops.aten.sigmoid_backward(flat, local)
            else:
                grad_logits = torch.ops.aten.tanh_backward(flat, local - scalar(1.0, local))
            del flat
            grad_normed, grad_taps = sliding_taps_grads(
                grad_logits, windows, taps, batch, plan.local_pad, need[3], need[4]
            )
            del grad_logits
        del synth, matrix
        # S's gradient straight into the kernel-matrix layout
        grad_matrix = torch.empty(batch, *plan.size, dtype=grad_kernel.dtype, device=grad_kernel.device)
        if local_view is None:
            _kernel_view(grad_matrix, plan.kernel_hw).copy_(grad_kernel)
        else:
            torch.mul(grad_kernel, local_view, out=_kernel_view(grad_matrix, plan.kernel_hw))
        del grad_kernel, local_view, local
        grad_kappa, grad_dft = spectral_synthesis_grads(
            grad_matrix, kmap, dft_weight, plan.index, plan.kernel_num, need[1], need[2], plan.scale
        )
    return grad_x, grad_kappa, grad_dft, grad_normed, grad_taps, grad_spatial, grad_channel, grad_filter


def _modulated(synth: Tensor, local_view: Tensor | None, scales: list[Tensor], inplace: bool = True) -> Tensor:
    """S * L * scales as a contiguous kernel (B, O, I, kh, kw), the conv's layout: a fresh tensor updated in place,
    or (``inplace=False``) plain differentiable products.
    """
    if not inplace:
        kernel = synth.contiguous() if local_view is None else synth.contiguous() * local_view
        for factor in scales:
            kernel = kernel * factor
        return kernel
    kernel = torch.empty(synth.shape, dtype=synth.dtype, device=synth.device)
    if local_view is None:
        kernel.copy_(synth)
    else:
        torch.mul(synth, local_view, out=kernel)
    for factor in scales:
        kernel.mul_(factor)
    return kernel


def _forward(
    x: Tensor,
    scaled: Tensor,
    dft_weight: Tensor,
    windows: Tensor | None,
    taps: Tensor | None,
    spatial: Tensor | None,
    channel: Tensor | None,
    filter_: Tensor | None,
    plan: KernelPlan,
    conv_dtype: torch.dtype,
    inplace: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """The output of :func:`kernel_conv`, the group map (B * P, rows * width) of the ``scaled`` kappa (:func:`_scaled`),
    the kernel matrix S (B, rows, cols) and the local factor L (B * I, O * kh * kw) or None, from KSM-Local's
    ``windows``; ``inplace=False``: plain differentiable ops.
    """
    with torch.autocast(x.device.type, enabled=False):
        spectrum = as_dtype(dft_weight, scaled.dtype)
        kmap = group_map(scaled, plan.index, plan.kernel_num)
        matrix = spectral_synthesis(kmap, spectrum, plan.size)
        synth = _kernel_view(matrix, plan.kernel_hw, inplace)  # (B, O, I, kh, kw), a view
        local = None if windows is None or taps is None else _local(windows, taps, plan.local_act, inplace)
        local_view = None if local is None else _local_view(local, synth.shape, inplace)
        if plan.on_features:  # channel on the input, filter on the output
            fc = None
            features = x if channel is None else x * _channels(channel, x)
        else:
            fc, features = _filter_channel(channel, filter_, synth.shape), x
        kernel = _modulated(synth, local_view, _scales(spatial, fc, synth.shape), inplace)
        y = _apply(as_dtype(features, conv_dtype), as_dtype(kernel, conv_dtype), plan, inplace)
        if plan.on_features and filter_ is not None:
            y = y * _channels(filter_, y)
    return y, kmap, matrix, local


def _plain(
    x: Tensor,
    kappa: Tensor,
    dft_weight: Tensor,
    normed: Tensor | None,
    taps: Tensor | None,
    spatial: Tensor | None,
    channel: Tensor | None,
    filter_: Tensor | None,
    *,
    plan: KernelPlan,
    conv_dtype: torch.dtype,
) -> Tensor:
    """:func:`kernel_conv` as plain differentiable ops (for a backward that is differentiated again)."""
    return _forward(
        x,
        _scaled(kappa, plan),
        dft_weight,
        _windows(normed, taps, plan),
        taps,
        spatial,
        channel,
        filter_,
        plan,
        conv_dtype,
        inplace=False,
    )[0]


def _factor_grads(
    grad_kernel: Tensor,
    synth: Tensor,
    local_view: Tensor | None,
    spatial: Tensor | None,
    channel: Tensor | None,
    filter_: Tensor | None,
    fc: Tensor | None,
    need: tuple[bool, ...],
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of spatial (B, kh * kw), channel (B, I) and filter (B, O) from that of the kernel
    ``S * L * spatial * channel * filter`` (B, O, I, kh, kw): contractions as batched matmuls.
    """
    if not any(need):
        return None, None, None
    batch, out_channels, in_channels, kh, kw = synth.shape
    taps = kh * kw
    product = grad_kernel * synth
    if local_view is not None:
        product.mul_(local_view)
    grad_factor = reshaped(product, batch, out_channels * in_channels, taps)
    if spatial is not None and fc is not None and (channel is None or filter_ is None):
        return _one_sided_grads(grad_factor, spatial, channel, filter_, synth.shape, need)
    grad_spatial = grad_channel = grad_filter = None
    if spatial is not None and need[0]:
        if fc is None:
            grad_spatial = grad_factor.sum(1)
        else:
            grad_spatial = torch.bmm(reshaped(fc, batch, 1, -1), grad_factor).view(batch, taps)
    if fc is not None and (need[1] or need[2]):
        if spatial is None:
            grad_fc = (grad_factor if taps == 1 else grad_factor.sum(2)).view(batch, out_channels, in_channels)
        else:
            grad_fc = torch.bmm(grad_factor, spatial.view(batch, taps, 1)).view(batch, out_channels, in_channels)
        if channel is not None and need[1]:
            if filter_ is None:
                grad_channel = grad_fc.sum(1)
            else:
                grad_channel = torch.bmm(filter_.view(batch, 1, out_channels), grad_fc).view(batch, in_channels)
        if filter_ is not None and need[2]:
            if channel is None:
                grad_filter = grad_fc.sum(2)
            else:
                grad_filter = torch.bmm(grad_fc, channel.view(batch, in_channels, 1)).view(batch, out_channels)
    return grad_spatial, grad_channel, grad_filter


def _one_sided_grads(
    grad_factor: Tensor,
    spatial: Tensor,
    channel: Tensor | None,
    filter_: Tensor | None,
    shape: torch.Size,
    need: tuple[bool, ...],
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """:func:`_factor_grads` from ``grad_factor`` (B, O * I, kh * kw) where one of channel (B, I) and filter (B, O) is
    present (the factor is that attention, expanded over the other dim): the gradient is summed over the expanded
    dim first, and both contractions are small batched matmuls (a reshape of the expanded factor copies it).
    """
    batch, out_channels, in_channels, kh, kw = shape
    taps = kh * kw
    if filter_ is not None:
        att, size, wanted = filter_, out_channels, need[2]
        partial = grad_factor.view(batch, out_channels, in_channels, taps).sum(2)  # (B, O, taps)
    else:
        att, size, wanted = cast(Tensor, channel), in_channels, need[1]
        partial = grad_factor.view(batch, out_channels, in_channels * taps).sum(1).view(batch, in_channels, taps)
    grad_spatial = torch.bmm(att.view(batch, 1, size), partial).view(batch, taps) if need[0] else None
    grad_att = torch.bmm(partial, spatial.view(batch, taps, 1)).view(batch, size) if wanted else None
    return (grad_spatial, None, grad_att) if filter_ is not None else (grad_spatial, grad_att, None)


# plan fields the operators take as one int list, after the index, scale and local activation
_PACKED = ("kernel_num", "size", "kernel_hw", "local_pad", "stride", "padding", "dilation", "on_features", "linear")


def _packed(plan: KernelPlan) -> list[int]:
    values: list[int] = []
    for name in _PACKED:
        value = getattr(plan, name)
        values.extend(value if isinstance(value, tuple) else [int(value)])
    return values


def _unpacked(index: Tensor, scale: float, local_act: str, packed: list[int]) -> KernelPlan:
    kernel_num, rows, cols, kh, kw, local_pad, *pairs, on_features, linear = packed
    stride, padding, dilation = (tuple(pairs[i : i + 2]) for i in (0, 2, 4))
    return KernelPlan(
        index=index,
        scale=scale,
        kernel_num=kernel_num,
        size=(rows, cols),
        kernel_hw=(kh, kw),
        local_pad=local_pad,
        local_act=local_act,
        stride=cast(tuple[int, int], stride),
        padding=cast(tuple[int, int], padding),
        dilation=cast(tuple[int, int], dilation),
        keep=False,
        on_features=bool(on_features),
        linear=bool(linear),
    )


@torch.library.custom_op("freqdyn::kernel_conv", mutates_args=())
def kernel_conv_operator(
    x: Tensor,
    kappa: Tensor,
    dft_weight: Tensor,
    normed: Tensor | None,
    taps: Tensor | None,
    spatial: Tensor | None,
    channel: Tensor | None,
    filter_: Tensor | None,
    index: Tensor,
    scale: float,
    local_act: str,
    packed: list[int],
    conv_dtype: torch.dtype,
) -> Tensor:
    """:func:`kernel_conv` as one operator, for ``torch.compile``: inductor keeps it opaque, so the synthesis runs the
    eager FFTs (inductor has no complex codegen), the conv the vendor's, and the gradients the Function's short
    sequence, at any batch and map size. ``packed``: the plan's ints (:data:`_PACKED`), numeric padding.
    """
    plan = _unpacked(index, scale, local_act, packed)
    windows = _windows(normed, taps, plan)
    y = _forward(x, _scaled(kappa, plan), dft_weight, windows, taps, spatial, channel, filter_, plan, conv_dtype)[0]
    return y.contiguous(memory_format=torch.contiguous_format if plan.linear else memory_format_of(x))


@kernel_conv_operator.register_fake
def _(x: Tensor, *args: object) -> Tensor:
    """The output's shape, dtype and layout; ``args``: the operator's other arguments, in its order."""
    index, scale, local_act, packed, dtype = args[-5:]
    plan = _unpacked(cast(Tensor, index), cast(float, scale), cast(str, local_act), cast(list[int], packed))
    conv_dtype = cast(torch.dtype, dtype)
    out_channels = plan.size[0] // plan.kernel_hw[0]
    if plan.linear:
        return x.new_empty((*x.shape[:2], out_channels), dtype=conv_dtype)
    batch, _, height, width = x.shape
    pads = cast(tuple[int, int], plan.padding)
    out_h, out_w = _output_size(height, width, plan.kernel_hw, plan.stride, pads, plan.dilation)
    out = x.new_empty((batch, out_channels, out_h, out_w), dtype=conv_dtype)
    return out.contiguous(memory_format=memory_format_of(x))


@torch.library.custom_op("freqdyn::kernel_conv_backward", mutates_args=())
def kernel_conv_operator_backward(
    grad: Tensor,
    inputs: list[Tensor | None],
    index: Tensor,
    scale: float,
    local_act: str,
    packed: list[int],
    conv_dtype: torch.dtype,
    need: list[bool],
) -> list[Tensor]:
    """The gradients of :func:`kernel_conv_operator`'s eight tensor ``inputs`` (in its order), each in its input's
    dtype and layout; an empty tensor in place of one ``need`` leaves out (or whose input is None). It rebuilds the
    kernels.
    """
    plan = _unpacked(index, scale, local_act, packed)
    x, kappa, dft_weight, normed, taps, spatial, channel, filter_ = inputs
    x, kappa, dft_weight = cast(Tensor, x), cast(Tensor, kappa), cast(Tensor, dft_weight)
    windows = _windows(normed, taps, plan)
    work = as_dtype(dft_weight, kappa.dtype)
    tensors = (x, work, normed, windows, taps, spatial, channel, filter_, _scaled(kappa, plan), None, None, None)
    grads = _grads(grad, *tensors, plan, conv_dtype, tuple(need))
    return [_gradient_like(g, t, grad) for g, t in zip(grads, inputs, strict=True)]


@kernel_conv_operator_backward.register_fake
def _(grad: Tensor, inputs: list[Tensor | None], *args: object) -> list[Tensor]:
    need = cast(list[bool], args[-1])
    fresh = [None if t is None or not n else t.new_empty(t.shape) for n, t in zip(need, inputs, strict=True)]
    return [_gradient_like(f, t, grad) for f, t in zip(fresh, inputs, strict=True)]


def _gradient_like(grad: Tensor | None, like: Tensor | None, empty: Tensor) -> Tensor:
    """``grad`` in the dtype and layout of its input ``like``, or an empty tensor like ``empty`` where either is
    None.
    """
    if grad is None or like is None:
        return empty.new_empty(0)
    layout = memory_format_of(like) if like.dim() == 4 else torch.contiguous_format
    return as_dtype(grad, like.dtype).contiguous(memory_format=layout)


def _save_kernel_inputs(ctx, inputs: tuple, output: Tensor) -> None:
    *tensors, index, ctx.scale, ctx.local_act, ctx.packed, ctx.conv_dtype = inputs
    ctx.save_for_backward(*tensors, index)


def _kernel_operator_backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
    *tensors, index = ctx.saved_tensors
    need = [bool(n) for n in ctx.needs_input_grad[:8]]
    args = (index, ctx.scale, ctx.local_act, ctx.packed, ctx.conv_dtype)
    if differentiable_backward():
        plan = _unpacked(index, ctx.scale, ctx.local_act, ctx.packed)
        plain = functools.partial(_plain, plan=plan, conv_dtype=ctx.conv_dtype)
        return (*plain_grads(plain, tensors, need, [grad]), None, None, None, None, None)
    grads = kernel_conv_operator_backward(grad, list(tensors), *args, need)
    return (*(g if n else None for g, n in zip(grads, need, strict=True)), None, None, None, None, None)


kernel_conv_operator.register_autograd(_kernel_operator_backward, setup_context=_save_kernel_inputs)
