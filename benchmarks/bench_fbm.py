"""FBM alone against the 3x3 conv it feeds, over the map sizes and widths of detectors and classifiers.

    python benchmarks/bench_fbm.py [--quick] [--rounds 5] [--batch 1]

For each (channels C, map H x W): the time of ``FrequencyBandModulation(C)`` (official masks) by its two routes,
the batched pruned FFTs (the default) and the separable matmuls (the CPU option), as ratios to a plain C -> C 3x3
``nn.Conv2d`` on the same map; inference (no_grad) and a training step (forward + backward).
The reference computation ``naive`` is the definition: ``irfft2(mask * rfft2(x))`` per band, then the weighted
sum. One interleaved run per row; medians with [min-max] of the ratio over rounds.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn

from bench_network import spread
from freqdyn.layers.fdconv.frequency_band_modulation import FrequencyBandModulation
from freqdyn.tools.reference import naive_lowpass
from freqdyn.tools.timing import interleaved_times_ms, machine_line, unsteady

GRID = [
    (64, (200, 304)),
    (128, (200, 304)),
    (64, (128, 128)),
    (128, (100, 152)),
    (256, (100, 152)),
    (64, (56, 56)),
    (256, (50, 76)),
    (512, (50, 76)),
    (128, (28, 28)),
    (512, (25, 38)),
    (256, (14, 14)),
    (512, (14, 14)),
]
QUICK = [(64, (56, 56)), (64, (100, 152))]


def naive_fbm(fbm: FrequencyBandModulation, x: torch.Tensor) -> torch.Tensor:
    """The definition: each band from full-size FFT low-passes, weighted by its attention map (G = 1)."""
    att = fbm.attention(x)[:, 0]  # (B, n, H, W)
    lows = [x] + [naive_lowpass(x, k, fbm.masks) for k in fbm.k_list]
    out = lows[-1]
    for j in range(len(fbm.k_list)):
        out = out + att[:, j, None] * (lows[j] - lows[j + 1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    print(f"{machine_line()}, batch={args.batch}, official masks, k_list=(2, 4, 8), one attention group\n")
    print("| C | H x W | mode | conv ms | FFT (default) | separable | naive |")
    print("|---|---|---|---|---|---|---|")
    for channels, (height, width) in QUICK if args.quick else GRID:
        torch.manual_seed(0)
        conv = nn.Conv2d(channels, channels, 3, padding=1)
        routes = {t: FrequencyBandModulation(channels, transform=t) for t in ("separable", "fft")}
        with torch.no_grad():
            for c in routes["separable"].freq_weight_conv_list:
                c.weight.normal_(0, 0.1)
        for fbm in routes.values():  # the same non-neutral attention maps in every route
            fbm.load_state_dict(routes["separable"].state_dict())
        for mode in ("inference", "train"):
            training = mode == "train"
            x = torch.randn(args.batch, channels, height, width, requires_grad=training)
            fns = {"conv": conv, **routes, "naive": lambda t, f=routes["fft"]: naive_fbm(f, t)}

            def call(fn, x=x, training=training):
                if training:
                    return lambda: fn(x).sum().backward()

                def run():
                    with torch.no_grad():
                        fn(x)

                return run

            times = interleaved_times_ms({name: call(fn) for name, fn in fns.items()}, args.rounds)
            base = times["conv"]
            flag = " (unsteady)" if unsteady(times) else ""
            print(
                f"| {channels} | {height} x {width} | {mode}{flag} | {base[len(base) // 2]:.1f} | "
                f"{spread(times['fft'], base)} | {spread(times['separable'], base)} | "
                f"{spread(times['naive'], base)} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
