"""Parameters and FLOPs of every UniConvNet scale beside the authors' README table.

    python benchmarks/uniconvnet_table.py [--quick]

Each scale is built randomly initialised (1000 classes) and counted by ``freqdyn.profile`` at the resolution of
the authors' row (224^2; 384^2 for L and XL, whose 1k rows are 384^2 fine-tunes). ``freqdyn.profile`` counts
FLOPs as 2 x multiply-accumulates (convolutions, linears, matmuls, and DCNv3's bilinear sampling at 2 x 5 per
value and point); the authors' counts are in multiply-accumulates (fvcore's convention), so the GMACs column
(FLOPs / 2) is the one to compare.
"""

from __future__ import annotations

import argparse

import torch

from freqdyn import profile, uniconvnet
from freqdyn.models import SCALES
from freqdyn.tools.timing import machine_line

# the authors' README (ai-paperwithcode/UniConvNet): params (M), FLOPs (G), resolution
AUTHORS = {
    "a": (3.4, 0.589, 224),
    "p0": (5.2, 0.932, 224),
    "p1": (6.1, 0.895, 224),
    "p2": (7.6, 1.25, 224),
    "n0": (10.2, 1.65, 224),
    "n1": (13.1, 1.88, 224),
    "n2": (15.0, 2.47, 224),
    "n3": (19.7, 3.37, 224),
    "t": (30.3, 5.1, 224),
    "s": (50.0, 8.48, 224),
    "b": (97.6, 15.9, 224),
    "l": (201.8, 100.1, 384),
    "xl": (226.7, 115.2, 384),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the smallest scale only: checks that it runs")
    scales = list(SCALES)[:1] if parser.parse_args().quick else list(SCALES)
    print(machine_line() + ", 1000 classes, batch 1\n")
    print("| scale | depths | dims | params (M) | authors' params (M) | GMACs | authors' GFLOPs | resolution |")
    print("|---|---|---|---|---|---|---|---|")
    for scale in scales:
        depths, dims, _ = SCALES[scale]
        params_ref, flops_ref, size = AUTHORS[scale]
        torch.manual_seed(0)
        model = uniconvnet(scale).eval()
        counted = profile(model, (1, 3, size, size))
        print(
            f"| {scale.upper()} | {depths} | {dims} | {counted.params / 1e6:.1f} | {params_ref} | "
            f"{counted.flops / 2e9:.3g} | {flops_ref} | {size}^2 |",
            flush=True,
        )
        del model


if __name__ == "__main__":
    main()
