"""Dispatched op counts: every ``aten::`` call of a training step or an inference, nested calls included.

In eager PyTorch each dispatched op costs host time (dispatcher, autograd bookkeeping, a kernel launch) before any
arithmetic runs, so a layer of many small ops is bound by the host on a GPU whatever its FLOPs. The count is
deterministic on any machine, so tests assert ceilings on it and ``benchmarks/bench_ops.py`` tabulates it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from torch import Tensor
from torch.profiler import ProfilerActivity, profile


def aten_calls(fn: Callable[[], object]) -> Counter[str]:
    """The ``aten::`` calls of one run of ``fn`` (after one warm-up run), by name, nested calls included."""
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return Counter(event.name for event in prof.events() if event.name.startswith("aten::"))


def _total(out: object) -> Tensor:
    """The sum of every tensor in a module's output (a tensor, or a tuple / list / dict of them)."""
    if isinstance(out, Tensor):
        return out.sum()
    parts = list(out.values()) if isinstance(out, dict) else out
    if not isinstance(parts, list | tuple):
        raise TypeError(f"cannot sum an output of type {type(out).__name__}")
    return torch.stack([_total(part) for part in parts]).sum()


def step(module: nn.Module, inputs: Sequence[Tensor], training: bool) -> Callable[[], None]:
    """A training step (train mode, forward and backward of the summed output) or an inference (eval mode, no grad)
    of ``module`` on ``inputs``, as a function to call, count or time.
    """
    module.train(training)

    def run() -> None:
        if training:
            _total(module(*inputs)).backward()
            return
        with torch.no_grad():
            module(*inputs)

    return run


def step_calls(module: nn.Module, inputs: Sequence[Tensor], training: bool) -> int:
    """aten calls of :func:`step`."""
    return sum(aten_calls(step(module, inputs, training)).values())
