"""FDConv speed and memory vs nn.Conv2d and vs the naive (official-style) reference, measured in one run.

    python benchmarks/bench_fdconv.py [--quick] [--kernel-num 64] [--device cpu]

Prints one row per (batch, channels, size): forward (inference, no_grad) and forward+backward (train mode)
times in ms, their ratios to nn.Conv2d and the naive reference's ratio to FDConv, and the memory saved for
backward (CPU) or the peak CUDA memory.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn as nn

from freqdyn import FDConv
from freqdyn.reference import naive_fdconv
from freqdyn.timing import best_ms, machine_line, saved_megabytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid for a smoke run")
    parser.add_argument("--kernel-num", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    grid = [(b, c, s) for b in (1, 8, 32) for c in (64, 256) for s in (56, 14)]
    if args.quick:
        grid = [(1, 64, 14), (8, 64, 56)]
    print(f"{machine_line()}, device={device}, kernel_num={args.kernel_num}, 3x3 conv C->C")
    header = ("| B | C | HxW | conv fwd ms | FDConv fwd ms | fwd vs conv | naive fwd vs FDConv | conv f+b ms | "
              "FDConv f+b ms | f+b vs conv | naive f+b vs FDConv | saved MB conv / FDConv / naive |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for batch, channels, size in grid:
        torch.manual_seed(0)
        conv = nn.Conv2d(channels, channels, 3, padding=1).to(device)
        fd = FDConv.from_conv(conv, kernel_num=args.kernel_num)
        x = torch.randn(batch, channels, size, size, device=device)
        slow = batch * channels * channels * size * size > 2**31
        reps = 1 if slow else args.repeats
        with torch.no_grad():
            conv.eval(), fd.eval()
            t_conv = best_ms(lambda: conv(x), reps, device)
            t_fd = best_ms(lambda: fd(x), reps, device)
            t_naive = best_ms(lambda: naive_fdconv(fd, x), 1, device)
        conv.train(), fd.train()

        def step(module_fn):
            return lambda: module_fn(x).sum().backward()

        tb_conv = best_ms(step(conv), reps, device)
        tb_fd = best_ms(step(fd), reps, device)
        tb_naive = best_ms(step(lambda inp: naive_fdconv(fd, inp)), 1, device)
        mem = [saved_megabytes(step(m), device) for m in (conv, fd, lambda inp: naive_fdconv(fd, inp))]
        row = [batch, channels, f"{size}x{size}", f"{t_conv:.1f}", f"{t_fd:.1f}", f"{t_fd / t_conv:.2f}x",
               f"{t_naive / t_fd:.2f}x", f"{tb_conv:.1f}", f"{tb_fd:.1f}", f"{tb_fd / tb_conv:.2f}x",
               f"{tb_naive / tb_fd:.2f}x", " / ".join(f"{m:.0f}" for m in mem)]
        print("| " + " | ".join(str(v) for v in row) + " |", flush=True)


if __name__ == "__main__":
    main()
