"""The normalisation of the attention trunks of FDConv's KSM-Global and ODConv: three documented choices.

``attention_norm``:

* ``'batch'`` (default, the official design): BatchNorm over the batch of pooled descriptors in training,
  running statistics in eval. Faithful to the authors' checkpoints. Two robustness fixes that leave its
  function unchanged: a batch of one in train mode is normalised with the running statistics (a variance
  cannot be estimated from one value; the reference layers raise), and a batch whose statistics are not
  finite (a NaN or inf input) leaves the running statistics unchanged instead of poisoning every later
  eval output.
* ``'frozen'``: the same BatchNorm, always normalising with its running statistics, which it never updates
  (the ``norm_eval=True`` of detection configs, for this norm only); its affine weights still train. Same
  state_dict as ``'batch'``, so checkpoints move between the two.
* ``'layer'``: a batch-independent per-sample normalisation over the hidden channels (``nn.GroupNorm`` with
  one group) with affine weights; no running statistics.

Recommendation (``benchmarks/bench_attention_norm.py``, BENCHMARKS.md): keep ``'batch'`` for checkpoints of
the official code and large per-device batches; with small per-device batches (B <= 4, common in detection
and segmentation) train new layers with ``'layer'``, or fine-tune pretrained ones with ``'frozen'``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .device_dtype import as_dtype
from .program_mode import compiling, exporting, functorch_active

ATTENTION_NORMS = ("batch", "frozen", "layer")


class AttentionBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d of the (B, C, 1, 1) attention trunk: ``'batch'`` or ``'frozen'`` (module docstring)."""

    running_mean: Tensor
    running_var: Tensor
    num_batches_tracked: Tensor

    def __init__(
        self,
        num_features: int,
        frozen: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_features, device=device, dtype=dtype)
        self.frozen = frozen

    def forward(self, z: Tensor) -> Tensor:
        # the trunk may run above the layer's dtype
        weight, bias = as_dtype(self.weight, z.dtype), as_dtype(self.bias, z.dtype)
        if not self.updates(z.shape[0]):
            mean, var = as_dtype(self.running_mean, z.dtype), as_dtype(self.running_var, z.dtype)
            return F.batch_norm(z, mean, var, weight, bias, False, 0.0, self.eps)
        if functorch_active() and not torch._C._functorch.is_functorch_wrapped_tensor(self.running_mean):
            raise ValueError(
                "a torch.func transform (vmap, grad, ...) cannot update the running statistics of a "
                "train-mode attention BatchNorm it does not own: call .eval(), pass the buffers "
                "through torch.func.functional_call / stack_module_state, or build the layer with "
                "attention_norm='frozen' or 'layer'"
            )
        factor = self.count_batch()
        mean, var = _updated(self.running_mean, z.dtype), _updated(self.running_var, z.dtype)
        out = F.batch_norm(z, mean, var, weight, bias, True, factor, self.eps)
        commit_statistics(self.running_mean, self.running_var, mean, var)
        return out

    def normalized(self, z: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, NormSaved]:
        """:meth:`forward` of z (B, C) with ``weight`` and ``bias`` in z's dtype, for an ``autograd.Function``
        (no autograd here; the running statistics are updated as forward does), and what :func:`norm_grads` needs.
        """
        train = self.updates(z.shape[0])
        factor = self.count_batch() if train else 0.0
        return batch_norm_step(z, weight, bias, self.running_mean, self.running_var, train, factor, self.eps)

    def updates(self, batch: int) -> bool:
        """Whether a batch of ``batch`` descriptors is normalised with its own statistics, which update the running
        ones: not in eval, not ``'frozen'``, not a batch of one.
        """
        return self.training and not self.frozen and batch != 1

    def count_batch(self) -> float:
        """Count a batch that updates the running statistics; its momentum (a cumulative average without one)."""
        self.num_batches_tracked.add_(1)
        return self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", frozen=True" if self.frozen else "")


class NormSaved(NamedTuple):
    """What :func:`norm_grads` needs of :meth:`AttentionBatchNorm.normalized`."""

    train: bool
    running_mean: Tensor | None  # the statistics it normalised with (running_only), else None
    running_var: Tensor | None
    batch_mean: Tensor | None  # the batch's mean and inverse std (train mode), else None
    batch_invstd: Tensor | None
    eps: float


def batch_norm_step(
    z: Tensor,
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    train: bool,
    factor: float,
    eps: float,
) -> tuple[Tensor, NormSaved]:
    """:class:`AttentionBatchNorm` of z (B, C) without the module, no autograd: with ``train`` by the batch's
    statistics, the running ones moved by ``factor`` in place (unless the batch's are not finite), else by the
    running ones; and what :func:`norm_grads` needs.
    """
    if not train:
        mean, var = as_dtype(running_mean, z.dtype), as_dtype(running_var, z.dtype)
        out = torch.ops.aten.native_batch_norm(z, weight, bias, mean, var, False, 0.0, eps)[0]
        return out, NormSaved(False, mean, var, None, None, eps)
    mean, var = _updated(running_mean, z.dtype), _updated(running_var, z.dtype)
    out, batch_mean, batch_invstd = torch.ops.aten.native_batch_norm(z, weight, bias, mean, var, True, factor, eps)
    commit_statistics(running_mean, running_var, mean, var)
    return out, NormSaved(True, None, None, batch_mean, batch_invstd, eps)


@torch.no_grad()
def commit_statistics(running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor) -> None:
    """Store updated statistics, unless the batch's are not finite (a NaN / inf input must not poison them).

    One check of all: the variances' sum is finite iff every statistic is (a non-finite mean makes its variance NaN;
    the sum overflows only for inputs beyond about 1e19, where the trunk overflows anyway: see FDConv's numeric
    range); t - t is 0 for a finite t, NaN (unequal to itself) otherwise.
    """
    total = var.sum()
    zero = total - total
    finite = zero == zero
    for running, updated in ((running_mean, mean), (running_var, var)):
        if functorch_active() or updated.dtype != running.dtype:  # (out= takes no cast, nor torch.func)
            running.copy_(torch.where(finite, updated, running))
        else:
            torch.where(finite, updated, running, out=running)


def norm_grads(
    grad: Tensor, z: Tensor, weight: Tensor, saved: NormSaved, need: tuple[bool, bool, bool]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of z, weight and bias of :meth:`AttentionBatchNorm.normalized` from that of its output."""
    return torch.ops.aten.native_batch_norm_backward(
        grad,
        z,
        weight,
        saved.running_mean,
        saved.running_var,
        saved.batch_mean,
        saved.batch_invstd,
        saved.train,
        saved.eps,
        list(need),
    )


def _updated(running: Tensor, dtype: torch.dtype) -> Tensor:
    """A copy of a running statistic in ``dtype``, for ``F.batch_norm`` to update: an empty tensor and a copy (one
    call fewer than ``clone``, two fewer than ``to``); under ``torch.func`` (a batched statistic) ``to`` itself.
    """
    if functorch_active():
        return running.to(dtype, copy=True)
    return torch.empty(running.shape, dtype=dtype, device=running.device).copy_(running)


class AttentionGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (``'layer'``) whose affine weights follow the input's dtype (the trunk may run above the
    layer's dtype).
    """

    def forward(self, z: Tensor) -> Tensor:
        weight = None if self.weight is None else as_dtype(self.weight, z.dtype)
        bias = None if self.bias is None else as_dtype(self.bias, z.dtype)
        return F.group_norm(z, self.num_groups, weight, bias, self.eps)


class AttentionLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` whose affine weights follow the input's dtype (KSM-Local normalises in float32 for half
    layers); same parameters, keys and initialisation.
    """

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else as_dtype(self.weight, x.dtype)
        bias = None if self.bias is None else as_dtype(self.bias, x.dtype)
        if compiling() or exporting() or torch.is_autocast_enabled(x.device.type):
            return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)
        # the op under F.layer_norm, one dispatched call fewer; autograd differentiates it the same (autocast casts
        # for layer_norm only)
        return torch.native_layer_norm(x, self.normalized_shape, weight, bias, self.eps)[0]


def attention_norm(
    kind: str, channels: int, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> AttentionGroupNorm | AttentionBatchNorm:
    """The norm of an attention trunk, (B, channels, 1, 1) -> same shape; ``kind`` in :data:`ATTENTION_NORMS`."""
    if kind not in ATTENTION_NORMS:
        raise ValueError(f"attention_norm must be one of {ATTENTION_NORMS}, got {kind!r}")
    if kind == "layer":
        return AttentionGroupNorm(1, channels, device=device, dtype=dtype)
    return AttentionBatchNorm(channels, frozen=kind == "frozen", device=device, dtype=dtype)


def reset_norm(norm: AttentionGroupNorm | AttentionBatchNorm) -> None:
    """Affine weights to (1, 0) and, for a BatchNorm, running statistics to (0, 1)."""
    norm.reset_parameters()
    if isinstance(norm, nn.BatchNorm2d):
        norm.reset_running_stats()
