"""Dispatched ops per training step and inference, and host time on tiny tensors, against the plain equivalents.

    python benchmarks/bench_ops.py [--quick] [--rounds 7]

Ops: every ``aten::`` call, nested ones included (``freqdyn.tools.op_count``), deterministic on any machine; a
training step is train mode, forward and backward of the summed output, an inference eval mode under no_grad.
The ratio is to ``nn.Conv2d`` 3x3 of the same width (``nn.Linear`` for FDLinear, the plain network for networks).
"naive" rows run the authors' algorithm one sample at a time (``freqdyn.tools.reference``), for scale.
Host time: the same layer on tiny tensors (B=2, 32 channels, 8x8), where the arithmetic is negligible and the time
is the host's; interleaved rounds, median ratio to ``nn.Conv2d`` with the [min-max] spread.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from freqdyn import CondConv2d, DynamicConv2d, FDConv, FDLinear, FreqFusion, KWConv2d, ODConv2d, convert
from freqdyn.tools.op_count import step, step_calls
from freqdyn.tools.reference import naive_fdconv, naive_freq_fusion
from freqdyn.tools.timing import interleaved_times_ms, machine_line

sys.path.insert(0, str(Path(__file__).parent))
from bench_network import spread

Case = tuple[Callable[[], nn.Module], list[tuple[int, ...]], str]


class Naive(nn.Module):
    """A layer run by its naive reference (per sample), for op counts."""

    def __init__(self, layer: nn.Module, reference: Callable[..., object]) -> None:
        super().__init__()
        self.layer, self.reference = layer, reference

    def forward(self, *inputs: torch.Tensor) -> object:
        return self.reference(self.layer, *inputs)


def layer_cases(channels: int = 64, size: int = 32, batch: int = 2) -> dict[str, Case]:
    """name -> (builder, input shapes, the plain row it is compared with)."""
    conv = (batch, channels, size, size)
    return {
        "nn.Conv2d": (lambda: nn.Conv2d(channels, channels, 3, padding=1), [conv], "nn.Conv2d"),
        "FDConv": (lambda: FDConv(channels, channels, 3, padding=1), [conv], "nn.Conv2d"),
        "FDConv naive": (lambda: Naive(FDConv(channels, channels, 3, padding=1), naive_fdconv), [conv], "nn.Conv2d"),
        "FDConv 512ch 8x8 B=32": (lambda: FDConv(512, 512, 3, padding=1), [(32, 512, 8, 8)], "nn.Conv2d 512"),
        "nn.Conv2d 512": (lambda: nn.Conv2d(512, 512, 3, padding=1), [(32, 512, 8, 8)], "nn.Conv2d 512"),
        "DY-Conv": (lambda: DynamicConv2d(channels, channels, 3, padding=1), [conv], "nn.Conv2d"),
        "CondConv": (lambda: CondConv2d(channels, channels, 3, padding=1), [conv], "nn.Conv2d"),
        "ODConv": (lambda: ODConv2d(channels, channels, 3, padding=1), [conv], "nn.Conv2d"),
        "KW (1x)": (lambda: KWConv2d.standalone(channels, channels, 3, padding=1), [conv], "nn.Conv2d"),
        "nn.Linear": (lambda: nn.Linear(channels, channels), [(batch, 16, channels)], "nn.Linear"),
        "FDLinear": (lambda: FDLinear(channels, channels), [(batch, 16, channels)], "nn.Linear"),
        "FreqFusion (hr 64, lr 128)": (
            lambda: FreqFusion(64, 128),
            [(batch, 64, 32, 32), (batch, 128, 16, 16)],
            "nn.Conv2d",
        ),
        "FreqFusion naive": (
            lambda: Naive(FreqFusion(64, 128), naive_freq_fusion),
            [(batch, 64, 32, 32), (batch, 128, 16, 16)],
            "nn.Conv2d",
        ),
    }


def resnet50_backbone(to: str | None) -> nn.Module:
    """torchvision's ResNet-50 without its head: plain, bottleneck convs converted to FDConv (kernel_num 64), or
    KernelWarehouse (4x, the authors' layout)."""
    import torchvision

    model = torchvision.models.resnet50()
    model.fc = nn.Identity()
    if to == "fdconv":
        convert(model, "fdconv", include=r"layer\d\.\d+\.conv[123]$", kernel_num=64)
    elif to == "kw":
        convert(model, "kw", cell_num_ratio=4)
    return model


def yolo(name: str) -> nn.Module:
    """Stock YOLOv8n-pose or the seed's C2f_FDConv model (bench_network's builders)."""
    from bench_network import build_yolo

    return build_yolo()[name]


def network_cases() -> dict[str, Case]:
    shape = [(2, 3, 64, 64)]
    cases: dict[str, Case] = {
        "ResNet-50 backbone": (lambda: resnet50_backbone(None), shape, "ResNet-50 backbone"),
        "ResNet-50 backbone, FDConv": (lambda: resnet50_backbone("fdconv"), shape, "ResNet-50 backbone"),
        "ResNet-50 backbone, KW (4x)": (lambda: resnet50_backbone("kw"), shape, "ResNet-50 backbone"),
    }
    if importlib.util.find_spec("ultralytics") is not None:
        image = [(2, 3, 160, 160)]
        cases["YOLOv8n-pose"] = (lambda: yolo("YOLOv8n-pose"), image, "YOLOv8n-pose")
        cases["YOLOv8n-pose, C2f_FDConv"] = (lambda: yolo("C2f_FDConv (freqdyn)"), image, "YOLOv8n-pose")
    return cases


def count_rows(cases: dict[str, Case]) -> list[str]:
    counts = {}
    for name, (build, shapes, _) in cases.items():
        torch.manual_seed(0)
        module, inputs = build(), [torch.randn(s) for s in shapes]
        counts[name] = (step_calls(module, inputs, True), step_calls(module, inputs, False))
    rows = []
    for name, (train, infer) in counts.items():
        base = counts[cases[name][2]]
        rows.append(f"| {name} | {train:,} | {train / base[0]:.1f}x | {infer:,} | {infer / base[1]:.1f}x |")
    return rows


def host_rows(rounds: int) -> list[str]:
    """Host time of each layer kind on tiny tensors, training step and inference, as a ratio to nn.Conv2d."""
    tiny = {
        name: case
        for name, case in layer_cases(32, 8, 2).items()
        if name in ("nn.Conv2d", "FDConv", "DY-Conv", "CondConv", "ODConv")
    }
    rows = []
    for training in (True, False):
        fns = {}
        for name, (build, shapes, _) in tiny.items():
            torch.manual_seed(0)
            fns[name] = step(build(), [torch.randn(s) for s in shapes], training)
        times = interleaved_times_ms(fns, rounds)
        base = times["nn.Conv2d"]
        for name, t in times.items():
            rows.append(
                f"| {name} | {'training step' if training else 'inference'} | {t[len(t) // 2]:.2f} | "
                f"{spread(t, base)} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="layers only, fewer rounds (a smoke run)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the host-time table")
    args = parser.parse_args()
    torch.set_num_threads(1)  # host time: one thread, as a GPU step's host side runs
    print(machine_line())
    cases = layer_cases()
    if not args.quick:
        cases.update(network_cases())
    print("\n| one step (B=2, 64ch 32x32 unless named) | training ops | vs plain | inference ops | vs plain |")
    print("|---|---|---|---|---|")
    print("\n".join(count_rows(cases)))
    print("\n| layer (B=2, 32ch, 8x8) | step | host ms | vs nn.Conv2d [min-max] |")
    print("|---|---|---|---|")
    print("\n".join(host_rows(3 if args.quick else args.rounds)))


if __name__ == "__main__":
    main()
