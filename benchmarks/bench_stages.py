"""Per stage of a ResNet-50 backbone with FDConv: time against the plain stage, beside FLOPs and the values moved.

    python benchmarks/bench_stages.py [--rounds 3] [--kernel-num 64] [--quick]

The network of ``bench_network.py`` (conv1/conv2/conv3 of every bottleneck converted, K=64). Each stage (layer1..4)
runs on the plain stem's output at the dense sizes: inference at B=1, 800 x 1216 and a training step (forward +
backward of the sum) at B=2, 512^2, plain and FDConv stages interleaved. Beside each time ratio: the FLOP ratio of
one forward (``freqdyn.profile``: convolutions, matmuls and FFTs, the floor that arithmetic sets), the per-sample
kernel values the stage's FDConvs build (each a pass over B x that many values per elementwise step of the
synthesis and modulation), and the map values FBM filters (B x C x H x W summed over the stage's FBM layers).
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn as nn

from bench_network import _no_grad, build, spread, total
from freqdyn import FDConv, profile
from freqdyn.tools.timing import interleaved_times_ms, machine_line

BODY = ("layer1", "layer2", "layer3", "layer4")
RUNS = (("eval", 1, (800, 1216)), ("train", 2, (512, 512)))


def fbm_values(stage: nn.Module, x: torch.Tensor) -> int:
    """Map values (B * C * H * W) entering the stage's FBM layers for input x."""
    sizes: list[int] = []
    hooks = [
        m.register_forward_pre_hook(lambda m, i: sizes.append(i[0].numel()))
        for m in stage.modules()
        if isinstance(m, FDConv) and m.FBM is not None
    ]
    with torch.no_grad():
        stage.eval()(x)
    for h in hooks:
        h.remove()
    return sum(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kernel-num", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="small maps and one round: checks that it runs")
    args = parser.parse_args()
    runs = (("eval", 1, (128, 192)), ("train", 1, (96, 96))) if args.quick else RUNS
    args.rounds = 1 if args.quick else args.rounds
    models = build(args.kernel_num)
    plain, fd = models["ResNet-50"], models["FDConv (freqdyn)"]
    print(machine_line() + f", kernel_num={args.kernel_num}\n")
    print("| stage | run | time vs plain | FLOPs vs plain | added ms | kernel values / sample | FBM map values |")
    print("|---|---|---|---|---|---|---|")
    for mode, batch, size in runs:
        torch.manual_seed(1)
        stem = nn.Sequential(plain.conv1, plain.bn1, plain.relu, plain.maxpool).eval()
        with torch.no_grad():
            h = stem(torch.randn(batch, 3, *size))
        fns, notes = {}, {}
        for name in BODY:
            inp = h.clone().requires_grad_(mode == "train")
            for tag, model in (("plain", plain), ("fd", fd)):
                stage = getattr(model, name)
                notes[f"{name}:{tag}"] = profile(stage.eval(), tuple(h.shape)).flops
                if mode == "train":
                    stage.train()
                    fns[f"{name}:{tag}"] = lambda m=stage, i=inp: total(m(i)).backward()
                else:
                    fns[f"{name}:{tag}"] = lambda m=stage, i=inp: _no_grad(m, i)
            stage = getattr(fd, name)
            dynamic = [m for m in stage.modules() if isinstance(m, FDConv)]
            kernels = sum(math.prod(m.kernel_shape) for m in dynamic)
            notes[f"{name}:values"] = (kernels, fbm_values(stage, h))
            with torch.no_grad():
                h = getattr(plain, name).eval()(h)
        times = interleaved_times_ms(fns, args.rounds)
        label = f"{'inference' if mode == 'eval' else 'train step'} B={batch} {size[0]}x{size[1]}"
        for name in BODY:
            a, b = times[f"{name}:plain"], times[f"{name}:fd"]
            kernels, fbm = notes[f"{name}:values"]
            print(
                f"| {name} | {label} | {spread(b, a)} | {notes[f'{name}:fd'] / notes[f'{name}:plain']:.2f}x | "
                f"+{b[len(b) // 2] - a[len(a) // 2]:.0f} | {kernels / 1e6:.2f}M | {fbm / 1e6:.1f}M |",
                flush=True,
            )


if __name__ == "__main__":
    main()
