"""Backward passes that autograd can differentiate again.

The layers' own autograd Functions compute their gradients with hand-written sequences that read tensors
made inside their forward, which autograd does not connect to the inputs. A backward run with
``create_graph=True`` (gradient penalties such as R1 or WGAN-GP, double backward) instead takes the gradients of the
same function written as plain differentiable ops, so that second derivatives are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def differentiable_backward() -> bool:
    """Whether the running backward records a graph (``create_graph=True``): then it must be differentiable."""
    return torch.is_grad_enabled()


def plain_grads(
    fn: Callable[..., Tensor | tuple[Tensor, ...]],
    inputs: Sequence[Tensor | None],
    need: Sequence[bool],
    grads: Sequence[Tensor | None],
) -> tuple[Tensor | None, ...]:
    """Gradients of ``fn(*inputs)`` (plain differentiable ops) with respect to the inputs that ``need`` them, from
    the gradients of its output(s), as a graph that autograd can differentiate again; None for the others.
    """
    with torch.enable_grad():
        out = fn(*inputs)
    outputs = [out] if isinstance(out, Tensor) else list(out)
    pairs = [(o, g) for o, g in zip(outputs, grads, strict=True) if g is not None]
    wanted = [t for t, n in zip(inputs, need, strict=True) if n and t is not None]
    found = iter(
        torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs], create_graph=True, allow_unused=True)
    )
    return tuple(next(found) if n and t is not None else None for t, n in zip(inputs, need, strict=True))
