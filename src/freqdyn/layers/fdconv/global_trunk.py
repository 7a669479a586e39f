"""KSM-Global's trunk and heads as one ``autograd.Function``: pooled (B, I) -> fc -> BatchNorm -> StarReLU -> the
heads' joined 1x1 convs -> ``multiplier * sigmoid(logits / temp)``, one (B, width) attention per head.

Autograd of these small ops dispatches about 140 calls per training step (the linear layers' transposes, the
StarReLU's scalar products and sums, the heads' joined weights); this Function's forward and hand-written backward
about half as many, and its forward serves inference too (issue 30). The BatchNorm keeps its module semantics
(:meth:`~freqdyn.layers._common.attention_norm.AttentionBatchNorm.normalized`: running statistics, their
non-finite guard, a batch of one) and its native backward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .._common.attention_norm import AttentionBatchNorm, NormSaved, batch_norm_step, norm_grads
from .._common.device_dtype import normal_tensors, scalar, split_views
from .._common.program_mode import compiling
from .._common.second_order import differentiable_backward, plain_grads
from .star_relu import star_relu


def _transposed(matrix: Tensor) -> Tensor:
    """The transpose of a contiguous (rows, cols, 1, ...) tensor as a (cols, rows) matrix, one ``as_strided`` (``t()``
    dispatches three calls).
    """
    return matrix.as_strided((matrix.shape[1], matrix.shape[0]), (1, matrix.shape[1]))


def global_trunk(
    pooled: Tensor,
    fc_weight: Tensor,
    norm: AttentionBatchNorm,
    norm_weight: Tensor,
    norm_bias: Tensor,
    star_scale: Tensor,
    star_bias: Tensor,
    head_weights: list[Tensor],
    head_biases: list[Tensor],
    multipliers: tuple[float, ...],
    temp: float,
) -> tuple[Tensor, ...]:
    """Each head's attention ``multiplier * sigmoid(logits / temp)``, (B, width) each, from pooled (B, I); every
    tensor in pooled's dtype. ``fc_weight`` (hidden, I, 1, 1), ``head_weights`` (width, hidden, 1, 1) each,
    ``head_biases`` (width,), one multiplier per head. Compiled, one operator (:func:`trunk_operator`) with the
    BatchNorm's momentum set (a cumulative average would read its batch count on the host).
    """
    count = len(head_weights)
    if compiling():  # the running statistics stored from the operator's outputs
        train = norm.updates(pooled.shape[0])
        factor = norm.count_batch() if train else 0.0
        weights = (pooled, fc_weight, norm_weight, norm_bias, star_scale, star_bias)
        stats = (norm.running_mean, norm.running_var)
        out, *_, mean, var = trunk_operator(
            *weights, head_weights, head_biases, *stats, list(multipliers), temp, train, factor, norm.eps
        )
        if train:
            with torch.no_grad():
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
        return tuple(out.split_with_sizes([w.shape[0] for w in head_weights], dim=1))
    return cast(
        tuple[Tensor, ...],
        _GlobalTrunk.apply(
            pooled, fc_weight, norm_weight, norm_bias, star_scale, star_bias, norm, multipliers, temp, count,
            *head_weights, *head_biases,
        ),
    )  # fmt: skip


@functools.lru_cache(maxsize=256)
def _column_scales(
    widths: tuple[int, ...], multipliers: tuple[float, ...], dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Each head's multiplier repeated over its columns, (sum of widths,), cached (a constant of the layer)."""
    with normal_tensors():
        values = [m for w, m in zip(widths, multipliers, strict=True) for _ in range(w)]
        return torch.tensor(values, dtype=dtype, device=device)


class _GlobalTrunk(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        pooled: Tensor,
        fc_weight: Tensor,
        norm_weight: Tensor,
        norm_bias: Tensor,
        star_scale: Tensor,
        star_bias: Tensor,
        norm: AttentionBatchNorm,
        multipliers: tuple[float, ...],
        temp: float,
        count: int,
        *heads: Tensor,
    ) -> tuple[Tensor, ...]:
        weights, biases = heads[:count], heads[count:]
        z, positive, act, joint, gate, saved = _trunk_forward(
            pooled, fc_weight, norm.normalized, norm_weight, norm_bias, star_scale, star_bias, weights, biases, temp
        )
        inputs = (pooled, fc_weight, norm_weight, norm_bias, star_scale, star_bias, *heads)
        ctx.save_for_backward(z, positive, act, joint, gate, *inputs)
        ctx.saved_norm = saved
        sizes = tuple(w.shape[0] for w in weights)
        ctx.multipliers, ctx.temp, ctx.sizes = multipliers, temp, sizes
        return split_views(gate * _column_scales(sizes, multipliers, gate.dtype, gate.device), sizes, dim=1)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> tuple[Tensor | None, ...]:
        z, positive, act, joint, gate, *inputs = ctx.saved_tensors
        pooled, fc_weight, norm_weight, _, star_scale = inputs[:5]
        need = ctx.needs_input_grad
        if differentiable_backward():
            plain = functools.partial(
                _plain, saved=ctx.saved_norm, count=len(ctx.sizes), multipliers=ctx.multipliers, temp=ctx.temp
            )
            found = plain_grads(plain, inputs, [*need[:6], *need[10:]], grads)
            return (*found[:6], None, None, None, None, *found[6:])
        found = _trunk_grads(
            torch.cat(grads, dim=1), z, positive, act, joint, gate, pooled, fc_weight, norm_weight, star_scale,
            ctx.saved_norm, ctx.sizes, ctx.multipliers, ctx.temp, need[:6],
        )  # fmt: skip
        grad_joint, grad_biases = cast(Tensor, found[6]), cast(Tensor, found[7])
        grad_weights = split_views(grad_joint.view(-1, joint.shape[1], 1, 1), ctx.sizes)
        return (*found[:6], None, None, None, None, *grad_weights, *split_views(grad_biases, ctx.sizes))


def _trunk_forward(
    pooled: Tensor,
    fc_weight: Tensor,
    normalize: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, NormSaved]],
    norm_weight: Tensor,
    norm_bias: Tensor,
    star_scale: Tensor,
    star_bias: Tensor,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    temp: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, NormSaved]:
    """The trunk's forward, no autograd: z = fc(pooled), the StarReLU's positive part and output, the heads' joined
    weight (N, hidden), the gate sigmoid(logits / temp) (B, N), and what ``normalize`` (the BatchNorm) saved.
    """
    hidden = fc_weight.shape[0]
    z = torch.mm(pooled, _transposed(fc_weight))
    normed, saved = normalize(z, norm_weight, norm_bias)
    positive = normed.clamp_min(0.0)  # the relu, one dispatched call fewer
    # StarReLU as its module computes it: positive * scale * positive + bias
    act = torch.addcmul(star_bias, positive * star_scale, positive)
    joint = torch.cat(list(weights)).view(-1, hidden)
    logits = torch.mm(act, _transposed(joint)).add_(torch.cat(list(biases)))  # (addmm dispatches two more calls)
    if temp != 1.0:
        logits.div_(scalar(temp, logits))
    return z, positive, act, joint, logits.sigmoid_(), saved


def _trunk_grads(
    grad: Tensor,
    z: Tensor,
    positive: Tensor,
    act: Tensor,
    joint: Tensor,
    gate: Tensor,
    pooled: Tensor,
    fc_weight: Tensor,
    norm_weight: Tensor,
    star_scale: Tensor,
    saved: NormSaved,
    sizes: tuple[int, ...],
    multipliers: tuple[float, ...],
    temp: float,
    need: Sequence[bool],
) -> tuple[Tensor | None, ...]:
    """Gradients of pooled, fc_weight, the norm's weight and bias, the StarReLU's scale and bias (None where ``need``
    leaves one out), the heads' joined weight (N, hidden) and joined bias (N,), from that of the trunk's scaled
    gate (B, N).
    """
    fc = fc_weight.view(fc_weight.shape[0], -1)
    scales = _column_scales(sizes, tuple(m / temp for m in multipliers), gate.dtype, gate.device)
    grad_logits = torch.ops.aten.sigmoid_backward(grad * scales, gate)
    grad_joint = torch.mm(_transposed(grad_logits), act)  # (N, hidden)
    grad_act = torch.mm(grad_logits, joint)
    # StarReLU: d/dp (p * s * p + b) = 2 s p (0 where the relu is off, as p is)
    weighted = grad_act * positive
    grad_scale = (weighted * positive).sum().view(1) if need[4] else None
    grad_bias = grad_act.sum().view(1) if need[5] else None
    grad_normed = weighted * (star_scale * scalar(2.0, star_scale))
    grads_norm = norm_grads(grad_normed, z, norm_weight, saved, (True, need[2], need[3]))
    grad_z = cast(Tensor, grads_norm[0])
    grad_fc = torch.mm(_transposed(grad_z), pooled).view(fc.shape[0], -1, 1, 1) if need[1] else None
    grad_pooled = torch.mm(grad_z, fc) if need[0] else None
    return (
        grad_pooled, grad_fc, grads_norm[1], grads_norm[2], grad_scale, grad_bias, grad_joint, grad_logits.sum(0)
    )  # fmt: skip


def _plain(
    pooled: Tensor,
    fc_weight: Tensor,
    norm_weight: Tensor,
    norm_bias: Tensor,
    star_scale: Tensor,
    star_bias: Tensor,
    *heads: Tensor,
    saved: NormSaved,
    count: int,
    multipliers: tuple[float, ...],
    temp: float,
) -> tuple[Tensor, ...]:
    """:func:`global_trunk` as plain differentiable ops (for a backward that is differentiated again), its
    BatchNorm with the statistics the forward normalised with.
    """
    hidden = fc_weight.shape[0]
    z = F.linear(pooled, fc_weight.view(hidden, -1))
    mean, var = (None, None) if saved.train else (saved.running_mean, saved.running_var)
    normed = F.batch_norm(z, mean, var, norm_weight, norm_bias, saved.train, 0.0, saved.eps)
    act = star_relu(normed, star_scale, star_bias)
    logits = F.linear(act, torch.cat(heads[:count]).view(-1, hidden), torch.cat(heads[count:]))
    sizes = [w.shape[0] for w in heads[:count]]
    gates = torch.sigmoid(logits / temp).split_with_sizes(sizes, dim=1)
    return tuple(g * m for g, m in zip(gates, multipliers, strict=True))


@torch.library.custom_op("freqdyn::global_trunk", mutates_args=())
def trunk_operator(
    pooled: Tensor,
    fc_weight: Tensor,
    norm_weight: Tensor,
    norm_bias: Tensor,
    star_scale: Tensor,
    star_bias: Tensor,
    head_weights: list[Tensor],
    head_biases: list[Tensor],
    running_mean: Tensor,
    running_var: Tensor,
    multipliers: list[float],
    temp: float,
    train: bool,
    factor: float,
    eps: float,
) -> list[Tensor]:
    """:func:`global_trunk` as one operator, for ``torch.compile``: inductor keeps it opaque (fewer generated kernels
    per layer to compile). Functional: with ``train`` it returns the running statistics moved by ``factor`` (kept
    where the batch's are not finite) for the caller to store. Returns the heads' joined attentions (B, N), then
    what backward needs (z, the StarReLU's positive part and output, the gate, and the batch's mean and inverse std
    with ``train``, else the running mean and variance), then the new running mean and variance (empty without
    ``train``).
    """
    # with ``train`` the step moves the statistics in place: copies, returned for the caller to store
    mean, var = (running_mean.clone(), running_var.clone()) if train else (running_mean, running_var)
    normalize = functools.partial(
        batch_norm_step, running_mean=mean, running_var=var, train=train, factor=factor, eps=eps
    )
    z, positive, act, _, gate, saved = _trunk_forward(
        pooled, fc_weight, normalize, norm_weight, norm_bias, star_scale, star_bias, head_weights, head_biases, temp
    )
    sizes = tuple(w.shape[0] for w in head_weights)
    out = gate * _column_scales(sizes, tuple(multipliers), gate.dtype, gate.device)
    if train:
        stats = [cast(Tensor, saved.batch_mean), cast(Tensor, saved.batch_invstd), mean, var]
    else:  # the statistics it normalised with may be the inputs themselves (an output must not alias one)
        used = cast(Tensor, saved.running_mean).clone(), cast(Tensor, saved.running_var).clone()
        stats = [*used, mean.new_empty(0), var.new_empty(0)]
    return [out, z, positive, act, gate, *stats]


@trunk_operator.register_fake
def _(pooled: Tensor, fc_weight: Tensor, *args: object) -> list[Tensor]:
    head_weights, running_mean, train = cast(list[Tensor], args[4]), cast(Tensor, args[6]), cast(bool, args[10])
    batch, hidden, width = pooled.shape[0], fc_weight.shape[0], sum(w.shape[0] for w in head_weights)
    maps = [pooled.new_empty(shape) for shape in ((batch, width), (batch, hidden), (batch, hidden), (batch, hidden))]
    stats = [pooled.new_empty(hidden), pooled.new_empty(hidden)]
    moved = [running_mean.new_empty(hidden if train else 0) for _ in range(2)]
    return [*maps, pooled.new_empty((batch, width)), *stats, *moved]


@torch.library.custom_op("freqdyn::global_trunk_backward", mutates_args=())
def trunk_operator_backward(
    grad: Tensor,
    inputs: list[Tensor],
    head_weights: list[Tensor],
    saved: list[Tensor],
    multipliers: list[float],
    temp: float,
    train: bool,
    eps: float,
) -> list[Tensor]:
    """The gradients of :func:`trunk_operator`'s pooled, fc_weight, norm_weight, norm_bias, star_scale and star_bias
    (``inputs``, in that order), of its heads' joined weight (N, hidden, 1, 1) and joined bias (N,), from that of its
    attentions (B, N); ``saved``: its outputs z, positive, act, gate and the two statistics.
    """
    pooled, fc_weight, norm_weight, _, star_scale, _ = inputs
    z, positive, act, gate, first, second = saved
    norm = _norm_saved(train, first, second, eps)
    sizes = tuple(w.shape[0] for w in head_weights)
    joint = torch.cat(head_weights).view(-1, fc_weight.shape[0])
    found = _trunk_grads(
        grad, z, positive, act, joint, gate, pooled, fc_weight, norm_weight, star_scale, norm, sizes,
        tuple(multipliers), temp, (True,) * 6,
    )  # fmt: skip
    grad_joint = cast(Tensor, found[6]).view(-1, fc_weight.shape[0], 1, 1)
    return [*(cast(Tensor, g) for g in found[:6]), grad_joint, cast(Tensor, found[7])]


@trunk_operator_backward.register_fake
def _(grad: Tensor, inputs: list[Tensor], head_weights: list[Tensor], *args: object) -> list[Tensor]:
    width, hidden = grad.shape[1], inputs[1].shape[0]
    return [*(t.new_empty(t.shape) for t in inputs), grad.new_empty(width, hidden, 1, 1), grad.new_empty(width)]


def _norm_saved(train: bool, first: Tensor, second: Tensor, eps: float) -> NormSaved:
    """The BatchNorm's :class:`NormSaved` from :func:`trunk_operator`'s two statistics."""
    if train:
        return NormSaved(True, None, None, first, second, eps)
    return NormSaved(False, first, second, None, None, eps)


def _save_trunk(ctx, inputs: tuple, output: list[Tensor]) -> None:
    *weights, head_weights, head_biases, _, _, multipliers, temp, train, _, eps = inputs
    ctx.save_for_backward(*weights, *head_weights, *head_biases, *output[1:7])
    ctx.count, ctx.multipliers, ctx.temp, ctx.train, ctx.eps = len(head_weights), multipliers, temp, train, eps


def _trunk_operator_backward(ctx, grads: list[Tensor]) -> tuple[object, ...]:
    count = ctx.count
    tensors = ctx.saved_tensors
    weights, heads, saved = list(tensors[:6]), tensors[6 : 6 + 2 * count], list(tensors[6 + 2 * count :])
    sizes = tuple(w.shape[0] for w in heads[:count])
    if differentiable_backward():
        norm = _norm_saved(ctx.train, saved[4], saved[5], ctx.eps)
        plain = functools.partial(_plain, saved=norm, count=count, multipliers=tuple(ctx.multipliers), temp=ctx.temp)
        found = plain_grads(plain, (*weights, *heads), (True,) * (6 + 2 * count), grads[0].split(sizes, dim=1))
        return (*found[:6], list(found[6 : 6 + count]), list(found[6 + count :]), *(None,) * 7)
    found = trunk_operator_backward(
        grads[0], weights, list(heads[:count]), saved, ctx.multipliers, ctx.temp, ctx.train, ctx.eps
    )
    grad_heads = list(found[6].split(sizes)), list(found[7].split(sizes))
    return (*found[:6], *grad_heads, *(None,) * 7)


trunk_operator.register_autograd(_trunk_operator_backward, setup_context=_save_trunk)
