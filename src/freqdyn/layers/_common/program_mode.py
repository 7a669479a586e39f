"""Which PyTorch program transform is running, and the layout queries that must respect it.

The layers pick export-friendly formulations while tracing or exporting, avoid in-place writes, saved-tensor
hooks and layout queries under ``torch.func`` transforms (``vmap``, ``grad``, ``jacrev`` ...), and run
size-dependent constant construction outside ``torch.compile`` graphs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor


def exporting() -> bool:
    """Whether the forward pass is being traced or exported (TorchScript, ONNX, ``torch.export``).

    ONNX needs no test of its own: the TorchScript-based exporter traces the forward (``jit.is_tracing``), the
    dynamo-based one exports it (``compiler.is_exporting``); ``onnx.is_in_onnx_export`` costs a microsecond a call.
    """
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def compiling() -> bool:
    """Whether ``torch.compile`` (dynamo) is tracing the forward pass."""
    return torch.compiler.is_compiling()


def functorch_active() -> bool:
    """Whether a ``torch.func`` transform (vmap, grad, vjp, jacrev, jvp ...) is running."""
    return torch._C._are_functorch_transforms_active()


def may_overwrite() -> bool:
    """Whether a layer may overwrite intermediates in place: autograd records nothing, and neither a ``torch.func``
    transform nor a trace runs (``jit.trace``'s check re-runs the forward with grad enabled).
    """
    return not (torch.is_grad_enabled() or functorch_active() or exporting())


def may_accumulate_in_place() -> bool:
    """Whether autograd-safe in-place accumulation into a fresh tensor (``baddbmm_``, ``addcmul_``) may run: not under
    a ``torch.func`` transform, which has no batching rule for those ops.
    """
    return not functorch_active()


def may_use_custom_kernels() -> bool:
    """Whether a layer may run its own ``autograd.Function`` or write into fresh buffers by slices: neither a trace or
    export (whose graph must hold plain ops) nor a ``torch.func`` transform (no batching rules for those) runs.
    """
    return not (exporting() or functorch_active())


def may_checkpoint() -> bool:
    """Whether activation checkpointing may run: autograd records, and neither a ``torch.func`` transform (the
    checkpoint's hooks are not transform-safe) nor a trace or export runs.
    """
    return torch.is_grad_enabled() and not (functorch_active() or exporting())


def has_hooks(module: nn.Module) -> bool:
    """Whether calling ``module`` runs any hook: its own or a global one (``nn.Module.__call__``'s own test)."""
    hooks = nn.modules.module
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
        or hooks._global_forward_hooks
        or hooks._global_forward_pre_hooks
        or hooks._global_backward_hooks
        or hooks._global_backward_pre_hooks
    )


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype in which FFT / spectral work runs: float32 for half and bfloat16, else unchanged."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def memory_format_of(x: Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a channels-last (and not also NCHW-contiguous) 4-D tensor, else contiguous.

    A tensor batched by ``vmap`` cannot be queried for its layout; it counts as contiguous.
    """
    if torch._C._functorch.is_batchedtensor(x):
        return torch.contiguous_format
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
