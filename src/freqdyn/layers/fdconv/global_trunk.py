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
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .._common.attention_norm import AttentionBatchNorm, NormSaved, norm_grads
from .._common.device_dtype import normal_tensors, scalar, split_views
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
    ``head_biases`` (width,), one multiplier per head.
    """
    count = len(head_weights)
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
        hidden = fc_weight.shape[0]
        z = torch.mm(pooled, _transposed(fc_weight))
        normed, saved = norm.normalized(z, norm_weight, norm_bias)
        positive = normed.clamp_min(0.0)  # the relu, one dispatched call fewer
        # StarReLU as its module computes it: positive * scale * positive + bias
        act = torch.addcmul(star_bias, positive * star_scale, positive)
        joint = torch.cat(weights).view(-1, hidden)
        logits = torch.mm(act, _transposed(joint)).add_(torch.cat(biases))  # (addmm dispatches two more calls)
        if temp != 1.0:
            logits.div_(scalar(temp, logits))
        gate = logits.sigmoid_()
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
        fc = fc_weight.view(fc_weight.shape[0], -1)
        need = ctx.needs_input_grad
        if differentiable_backward():
            plain = functools.partial(
                _plain, saved=ctx.saved_norm, count=len(ctx.sizes), multipliers=ctx.multipliers, temp=ctx.temp
            )
            found = plain_grads(plain, inputs, [*need[:6], *need[10:]], grads)
            return (*found[:6], None, None, None, None, *found[6:])
        sizes = ctx.sizes
        scales = _column_scales(sizes, tuple(m / ctx.temp for m in ctx.multipliers), gate.dtype, gate.device)
        grad_logits = torch.ops.aten.sigmoid_backward(torch.cat(grads, dim=1) * scales, gate)
        grad_joint = torch.mm(_transposed(grad_logits), act)  # (N, hidden)
        grad_weights = split_views(grad_joint.view(-1, joint.shape[1], 1, 1), sizes)
        grad_biases = split_views(grad_logits.sum(0), sizes)
        grad_act = torch.mm(grad_logits, joint)
        # StarReLU: d/dp (p * s * p + b) = 2 s p (0 where the relu is off, as p is)
        weighted = grad_act * positive
        grad_scale = (weighted * positive).sum().view(1) if need[4] else None
        grad_bias = grad_act.sum().view(1) if need[5] else None
        grad_normed = weighted * (star_scale * scalar(2.0, star_scale))
        grads_norm = norm_grads(grad_normed, z, norm_weight, ctx.saved_norm, (True, need[2], need[3]))
        grad_z, grad_norm_weight, grad_norm_bias = cast(Tensor, grads_norm[0]), grads_norm[1], grads_norm[2]
        grad_fc = torch.mm(_transposed(grad_z), pooled).view(fc.shape[0], -1, 1, 1) if need[1] else None
        grad_pooled = torch.mm(grad_z, fc) if need[0] else None
        return (
            grad_pooled, grad_fc, grad_norm_weight, grad_norm_bias, grad_scale, grad_bias, None, None, None, None,
            *grad_weights, *grad_biases,
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
