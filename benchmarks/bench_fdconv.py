"""FDConv speed and memory vs nn.Conv2d and vs the naive (official-style) reference, measured in one run.

    python benchmarks/bench_fdconv.py [--quick] [--kernel-num 64] [--device cpu] [--rounds 5]

Prints one row per (batch, channels, size): forward (inference, no_grad) and forward+backward (train mode)
times in ms, their ratios to nn.Conv2d, FDConv without FBM against nn.Conv2d, the naive reference's time
over FDConv's, and the memory saved for backward (CPU) or the peak CUDA memory. Times are medians over
rounds that run every candidate in turn (:func:`freqdyn.tools.timing.interleaved_ms`).
"""

from __future__ import annotations

import argparse
import functools

import torch
import torch.nn as nn

from freqdyn import FDConv
from freqdyn.tools.reference import naive_fdconv
from freqdyn.tools.timing import interleaved_ms, machine_line, saved_megabytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid for a smoke run")
    parser.add_argument("--kernel-num", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    grid = [(b, c, s) for b in (1, 8, 32) for c in (64, 256) for s in (56, 14)]
    if args.quick:
        grid = [(1, 64, 14), (8, 64, 56)]
    print(f"{machine_line()}, device={device}, kernel_num={args.kernel_num}, 3x3 conv C->C")
    header = (
        "| B | C | HxW | conv fwd ms | FDConv fwd ms | fwd vs conv | no-FBM fwd vs conv | naive fwd vs FDConv | "
        "conv f+b ms | FDConv f+b ms | f+b vs conv | naive f+b vs FDConv | saved MB conv / FDConv / naive |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for batch, channels, size in grid:
        torch.manual_seed(0)
        conv = nn.Conv2d(channels, channels, 3, padding=1).to(device)
        fd = FDConv.from_conv(conv, kernel_num=args.kernel_num)
        plain = FDConv.from_conv(conv, kernel_num=args.kernel_num, use_fbm_if_k_in=())
        x = torch.randn(batch, channels, size, size, device=device)
        slow = batch * channels * channels * size * size > 2**31
        rounds = 1 if slow else args.rounds
        naive = functools.partial(naive_fdconv, fd)
        with torch.no_grad():
            for m in (conv, fd, plain):
                m.eval()
            fwd = interleaved_ms(
                {
                    name: functools.partial(fn, x)
                    for name, fn in {"conv": conv, "fd": fd, "plain": plain, "naive": naive}.items()
                },
                rounds,
                device,
            )
        for m in (conv, fd):
            m.train()

        def step(module_fn, x: torch.Tensor = x):
            return lambda: module_fn(x).sum().backward()

        fb = interleaved_ms({"conv": step(conv), "fd": step(fd), "naive": step(naive)}, rounds, device)
        mem = [saved_megabytes(step(m), device) for m in (conv, fd, naive)]
        row = [
            batch,
            channels,
            f"{size}x{size}",
            f"{fwd['conv']:.1f}",
            f"{fwd['fd']:.1f}",
            f"{fwd['fd'] / fwd['conv']:.2f}x",
            f"{fwd['plain'] / fwd['conv']:.2f}x",
            f"{fwd['naive'] / fwd['fd']:.2f}x",
            f"{fb['conv']:.1f}",
            f"{fb['fd']:.1f}",
            f"{fb['fd'] / fb['conv']:.2f}x",
            f"{fb['naive'] / fb['fd']:.2f}x",
            " / ".join(f"{m:.0f}" for m in mem),
        ]
        print("| " + " | ".join(str(v) for v in row) + " |", flush=True)


if __name__ == "__main__":
    main()
