"""Wall-clock timing and autograd memory shared by the demo and the benchmarks."""

from __future__ import annotations

import ctypes
import gc
import platform
import time
from collections.abc import Callable

import torch


def machine_line() -> str:
    """The header line every benchmark table starts with: torch version, CPU, threads."""
    return (
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={torch.get_num_threads()}"
    )


def _elapsed_s(fn: Callable[[], object], device: torch.device | str) -> float:
    """Wall time of one ``fn()`` in seconds, CUDA-synchronised before and after on a CUDA device."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def best_ms(fn: Callable[[], object], repeats: int = 3, device: torch.device | str = "cpu") -> float:
    """Best-of-``repeats`` wall time of ``fn()`` in ms after one warm-up call (CUDA-synchronised)."""
    fn()
    return min((_elapsed_s(fn, device) for _ in range(repeats)), default=float("inf")) * 1e3


def interleaved_times_ms(
    fns: dict[str, Callable[[], object]], rounds: int = 5, device: torch.device | str = "cpu"
) -> dict[str, list[float]]:
    """Wall times (ms, sorted) of each ``fns[name]()`` over ``rounds`` rounds that call every function in turn.

    Interleaving exposes all candidates to the same machine state, so their ratios stay stable on hosts whose
    speed drifts between runs (where separate best-of-N timings can disagree by 2x). One warm-up call each.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(_elapsed_s(fn, device) * 1e3)
    return {name: sorted(t) for name, t in times.items()}


def unsteady(times: dict[str, list[float]], factor: float = 2.0) -> dict[str, float]:
    """The entries of :func:`interleaved_times_ms` whose slowest round took over ``factor`` times the fastest, with
    that ratio: a sign that the host's load changed during the run, so the ratios between entries are unreliable.
    """
    return {name: t[-1] / t[0] for name, t in times.items() if t and t[0] > 0 and t[-1] / t[0] > factor}


def interleaved_ms(
    fns: dict[str, Callable[[], object]], rounds: int = 5, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Median of :func:`interleaved_times_ms` for each function."""
    return {name: t[len(t) // 2] for name, t in interleaved_times_ms(fns, rounds, device).items()}


def saved_megabytes(fn, device: torch.device) -> float:
    """MB of tensors saved for backward (CPU), or peak CUDA memory of forward+backward."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        fn()
        return torch.cuda.max_memory_allocated() / 2**20
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values()) / 2**20


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    raise OSError(f"{key} not in /proc/self/status")


def peak_rss_mb(fn: Callable[[], object]) -> float:
    """Peak resident memory (MB) that ``fn()`` adds to this process (Linux: resets the VmHWM counter).

    Freed heap memory is first returned to the system (glibc ``malloc_trim``), so memory that the allocator
    still holds from earlier work does not hide the peak.
    """
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    base = _status_mb("VmRSS")
    fn()
    return _status_mb("VmHWM") - base
