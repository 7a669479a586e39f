"""Typed factory keyword arguments (``device``, ``dtype``) that every layer forwards to its parameters, and the
dtype helpers that keep no-op conversions off the dispatcher.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from typing import TypedDict

import torch
from torch import Tensor

from .program_mode import compiling, exporting


class FactoryKwargs(TypedDict):
    device: torch.device | None
    dtype: torch.dtype | None


def factory_kwargs(device: torch.device | None, dtype: torch.dtype | None) -> FactoryKwargs:
    """``{"device": device, "dtype": dtype}``, typed so that ``**`` into torch factories type-checks."""
    return {"device": device, "dtype": dtype}


def as_dtype(tensor: Tensor, dtype: torch.dtype) -> Tensor:
    """``tensor.to(dtype)``, without dispatching an op when it already has that dtype (a no-op ``to`` still costs
    a dispatch, and the layers call it on every forward for mixed-precision safety).
    """
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def reshaped(tensor: Tensor, *shape: int) -> Tensor:
    """``tensor.reshape(*shape)``: one ``view`` where the tensor is contiguous (``reshape`` dispatches a ``view``
    under it, two calls), else the reshape.
    """
    return tensor.view(*shape) if tensor.is_contiguous() else tensor.reshape(*shape)


def inserted(tensor: Tensor, dim: int) -> Tensor:
    """``tensor.unsqueeze(dim)`` as one ``view`` (unsqueeze, or indexing with None, dispatches two)."""
    return tensor.view(*tensor.shape[:dim], 1, *tensor.shape[dim:])


def narrowed(tensor: Tensor, dim: int, start: int, length: int) -> Tensor:
    """``tensor.narrow(dim, start, length)`` as one ``as_strided`` call (narrow dispatches three, slicing two): only
    for tensors autograd does not record, as as_strided's own backward is costly. Compiled, the narrow itself (a
    graph may write into a narrow view, not into an as_strided one).
    """
    if compiling():
        return tensor.narrow(dim, start, length)
    size = list(tensor.shape)
    size[dim] = length
    return tensor.as_strided(size, tensor.stride(), tensor.storage_offset() + start * tensor.stride(dim))


def split_views(tensor: Tensor, sizes: tuple[int, ...], dim: int = 0) -> tuple[Tensor, ...]:
    """``tensor.split_with_sizes(sizes, dim)`` as one :func:`narrowed` view per part (the split dispatches one call
    more), for tensors autograd does not record.
    """
    starts = itertools.accumulate(sizes[:-1], initial=0)
    return tuple(narrowed(tensor, dim, start, size) for start, size in zip(starts, sizes, strict=True))


def zeroed(*shape: int, dtype: torch.dtype | None, device: torch.device | None) -> Tensor:
    """``torch.zeros(shape)`` as ``empty`` and ``zero_`` (``zeros`` dispatches both under one more call)."""
    return torch.empty(shape, dtype=dtype, device=device).zero_()


def selected(tensor: Tensor, dim: int, index: int) -> Tensor:
    """``tensor.select(dim, index)`` as one ``as_strided`` call, for tensors autograd does not record."""
    size, stride = list(tensor.shape), list(tensor.stride())
    del size[dim], stride[dim]
    return tensor.as_strided(size, stride, tensor.storage_offset() + index * tensor.stride(dim))


def swapped(tensor: Tensor) -> Tensor:
    """A tensor's last two dims swapped (``tensor.mT``), as one ``as_strided`` call (``transpose`` dispatches two):
    only for tensors autograd does not record, as as_strided's own backward is costly.
    """
    *lead, rows, cols = tensor.shape
    *steps, row_step, col_step = tensor.stride()
    return tensor.as_strided((*lead, cols, rows), (*steps, col_step, row_step))


def scalar(value: float, like: Tensor) -> Tensor | float:
    """``value`` as a cached 0-dim tensor in ``like``'s dtype and device, for arithmetic with ``like``: a Python
    number operand is wrapped into a tensor and converted on every call (four more dispatched ops). While compiling
    or exporting the number itself (a graph constant either way).
    """
    if compiling() or exporting():
        return value
    return _cached_scalar(float(value), like.dtype, like.device)


def normal_tensors() -> contextlib.AbstractContextManager:
    """A context in which tensors made for a cache are normal tensors, also when the caller runs under
    ``torch.inference_mode`` (an inference tensor cannot be saved for backward by a later training step).
    """
    return torch.inference_mode(False) if torch.is_inference_mode_enabled() else contextlib.nullcontext()


@functools.lru_cache(maxsize=256)
def _cached_scalar(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    with normal_tensors():
        return torch.full((), value, dtype=dtype, device=device)
