"""DY-Conv, CondConv, ODConv and FDConv vs nn.Conv2d and vs their naive per-sample references, in one run.

    python benchmarks/bench_dynamic.py [--quick] [--device cpu]

Every layer is converted from the same 3x3 ``nn.Conv2d`` C -> C (padding 1) with its paper's kernel count
(DY-Conv 4, CondConv 8, ODConv 4, FDConv kernel_num 64). Forward = eval mode under no_grad; f+b = train
mode forward + backward of ``out.sum()``. "naive" runs the same layer's maths one sample at a time
(``freqdyn.tools.reference``).
"""

from __future__ import annotations

import argparse
import functools

import torch
import torch.nn as nn

from freqdyn import count_parameters
from freqdyn.targets import CONV_TARGETS, TARGETS, paper_layers
from freqdyn.tools.reference import naive_expert_conv, naive_fdconv
from freqdyn.tools.timing import best_ms, machine_line, saved_megabytes

NAIVE = {
    kind.paper_label: naive_fdconv if name == "fdconv" else naive_expert_conv
    for name, kind in TARGETS.items()
    if name in CONV_TARGETS
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid for a smoke run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    grid = [(b, c, s) for b in (1, 8) for c in (64, 256) for s in (56, 14)]
    if args.quick:
        grid = [(2, 64, 14)]
    print(f"{machine_line()}, device={device}, 3x3 conv C->C")
    header = (
        "| layer | B | C | HxW | params vs conv | fwd ms | fwd vs conv | naive fwd vs layer | f+b ms | "
        "f+b vs conv | saved MB vs conv |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for batch, channels, size in grid:
        torch.manual_seed(0)
        conv = nn.Conv2d(channels, channels, 3, padding=1).to(device)
        x = torch.randn(batch, channels, size, size, device=device)

        def step(fn, x: torch.Tensor = x):
            return lambda: fn(x).sum().backward()

        with torch.no_grad():
            t_conv = best_ms(functools.partial(conv.eval(), x), args.repeats, device)
        tb_conv = best_ms(step(conv.train()), args.repeats, device)
        mem_conv = saved_megabytes(step(conv), device)
        for name, layer in paper_layers(conv).items():
            naive = NAIVE[name]
            with torch.no_grad():
                layer.eval()
                t_layer = best_ms(functools.partial(layer, x), args.repeats, device)
                t_naive = best_ms(functools.partial(naive, layer, x), 1, device)
            layer.train()
            tb_layer = best_ms(step(layer), args.repeats, device)
            mem = saved_megabytes(step(layer), device)
            row = [
                name,
                batch,
                channels,
                f"{size}x{size}",
                f"{count_parameters(layer) / count_parameters(conv):.1f}x",
                f"{t_layer:.1f}",
                f"{t_layer / t_conv:.2f}x",
                f"{t_naive / t_layer:.2f}x",
                f"{tb_layer:.1f}",
                f"{tb_layer / tb_conv:.2f}x",
                f"{mem / max(mem_conv, 1e-9):.1f}x",
            ]
            print("| " + " | ".join(str(v) for v in row) + " |", flush=True)


if __name__ == "__main__":
    main()
