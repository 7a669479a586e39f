"""Typed factory keyword arguments (``device``, ``dtype``) that every layer forwards to its parameters, and the
dtype helpers that keep no-op conversions off the dispatcher.
"""

from __future__ import annotations

import contextlib
import functools
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
