"""FreqFusion's reassembly and the whole module vs the unfold (reference) formulation, in one run.

    python benchmarks/bench_freqfusion.py [--quick]

Rows: CARAFE k=5 upsampling 128 ch from 128^2 to 256^2 (the issue's setting) and smaller maps, then the
full FreqFusion (defaults + offset generator) at the same sizes, against ``freqdyn.tools.reference``'s
unfold-based versions and against plain nearest / bilinear interpolation. "peak MB" is the resident
memory a forward pass adds (measured in a forked process, Linux), "saved MB" what autograd keeps for
backward.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from freqdyn import FreqFusion
from freqdyn.layers import carafe
from freqdyn.tools.reference import naive_carafe, naive_freq_fusion
from freqdyn.tools.timing import best_ms, machine_line, peak_rss_mb, saved_megabytes

CPU = torch.device("cpu")


def measure(name: str, fwd, train) -> list[str]:
    with torch.no_grad():
        ms = best_ms(fwd, 2)
        peak = peak_rss_mb(fwd)
    saved = saved_megabytes(train, CPU)
    return [name, f"{ms:.0f}", f"{peak:.0f}", f"{saved:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [(1, 32, 32)] if args.quick else [(1, 128, 128), (2, 128, 64)]
    print(machine_line())
    print("| B x C x lr^2 -> hr^2 | method | fwd ms | peak MB (fwd) | saved MB (f+b) |")
    print("|---|---|---|---|---|")
    for batch, channels, size in sizes:
        shape = f"{batch}x{channels}x{size}^2 -> {2 * size}^2"
        for row in rows_at(batch, channels, size):
            print(f"| {shape} | " + " | ".join(row) + " |", flush=True)


def rows_at(batch: int, channels: int, size: int) -> list[list[str]]:
    """One table row per method at lr size ``size``, upsampled 2x."""
    torch.manual_seed(0)
    lr = torch.randn(batch, channels, size, size, requires_grad=True)
    hr = torch.randn(batch, channels, 2 * size, 2 * size, requires_grad=True)
    kernels = torch.softmax(torch.randn(batch, 25, 2 * size, 2 * size), 1).requires_grad_()
    layer = FreqFusion(channels, channels, feature_resample=True)
    return [
        measure(
            "nearest interpolation",
            lambda: F.interpolate(lr, scale_factor=2.0),
            lambda: F.interpolate(lr, scale_factor=2.0).sum().backward(),
        ),
        measure(
            "bilinear interpolation",
            lambda: F.interpolate(lr, scale_factor=2.0, mode="bilinear"),
            lambda: F.interpolate(lr, scale_factor=2.0, mode="bilinear").sum().backward(),
        ),
        measure(
            "CARAFE k=5, freqdyn",
            lambda: carafe(lr, kernels, 5, 1, 2),
            lambda: carafe(lr, kernels, 5, 1, 2).sum().backward(),
        ),
        measure(
            "CARAFE k=5, unfold (reference)",
            lambda: naive_carafe(lr, kernels, 5, 1, 2),
            lambda: naive_carafe(lr, kernels, 5, 1, 2).sum().backward(),
        ),
        measure("FreqFusion, freqdyn", lambda: layer(hr, lr), lambda: sum(layer(hr, lr)).sum().backward()),
        measure(
            "FreqFusion, unfold (reference)",
            lambda: naive_freq_fusion(layer, hr, lr),
            lambda: sum(naive_freq_fusion(layer, hr, lr)).sum().backward(),
        ),
    ]


if __name__ == "__main__":
    main()
