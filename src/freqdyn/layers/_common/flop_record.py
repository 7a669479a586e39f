"""Hook for FLOPs that ``torch.utils.flop_counter`` cannot see (element-wise reassembly); used by
``freqdyn.profile``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .program_mode import compiling

ACTIVE: ContextVar[Callable[[int], None] | None] = ContextVar("freqdyn_flop_recorder", default=None)


def record_flops(flops: int) -> None:
    """Report ``flops`` (2 x multiply-accumulates) to the active profiler, if any (never under ``torch.compile``:
    the profiler runs eagerly, and torch 2.13's dynamo cannot trace ``ContextVar.get``).
    """
    if compiling():
        return
    recorder = ACTIVE.get()
    if recorder is not None:
        recorder(flops)


@contextmanager
def flop_recording(recorder: Callable[[int], None]) -> Iterator[None]:
    """Within the block, every :func:`record_flops` of a layer reports to ``recorder`` (``freqdyn.profile``'s
    hook: it attributes them to the module that runs).
    """
    token = ACTIVE.set(recorder)
    try:
        yield
    finally:
        ACTIVE.reset(token)
