"""Parameters joined along their first dim for one matmul or conv, with a short backward.

The attention heads of a layer (FDConv's KSM-Global heads, FBM's band convs, ODConv's heads) run as one product
of their stacked weights. ``torch.cat``'s backward takes each part's gradient by a ``narrow`` (three dispatched
calls per part); here the backward is one view per part.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor

from .device_dtype import reshaped, split_views
from .program_mode import compiling, may_use_custom_kernels


class _Joined(torch.autograd.Function):
    """torch.cat(parts) viewed as ``shape``; the gradient of each part is a view of the joined gradient."""

    @staticmethod
    def forward(ctx, shape: tuple[int, ...] | None, *parts: Tensor) -> Tensor:
        joined = torch.cat(parts)
        ctx.joined_shape = None if shape is None else joined.shape
        ctx.sizes = tuple(part.shape[0] for part in parts)
        return joined if shape is None else joined.view(shape)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.joined_shape is not None:
            grad = reshaped(grad, *ctx.joined_shape)
        return None, *split_views(grad, ctx.sizes)


def joined(parts: Sequence[Tensor], shape: tuple[int, ...] | None = None) -> Tensor:
    """``torch.cat(parts)`` (along dim 0), viewed as ``shape`` when given.

    Under ``torch.compile`` (dynamo cannot trace a Function's varargs), tracing, export and ``torch.func``
    transforms it is the plain ``torch.cat``.
    """
    if compiling() or not may_use_custom_kernels():
        out = torch.cat(list(parts))
        return out if shape is None else out.view(shape)
    return cast(Tensor, _Joined.apply(shape, *parts))
