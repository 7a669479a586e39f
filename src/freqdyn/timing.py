"""Wall-clock timing shared by the demo and the benchmarks."""
from __future__ import annotations

import time
from typing import Callable

import torch


def best_ms(fn: Callable[[], object], repeats: int = 3, device: torch.device | str = "cpu") -> float:
    """Best-of-``repeats`` wall time of ``fn()`` in ms after one warm-up call (CUDA-synchronised)."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best * 1e3
