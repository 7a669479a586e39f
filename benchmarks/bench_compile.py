"""torch.compile (inductor) of each layer: cold compile time, recompiles over batch and spatial sizes, speed.

    python benchmarks/bench_compile.py [--quick] [--layers FDConv,ODConv,...] [--modes eval,train]
                                       [--no-layout-optimization] [--network 224,512]

Each layer (64 -> 64 channels, 3x3) is compiled with ``dynamic=True`` in eval (no_grad forward) and train
(forward + backward) mode, with inductor's caches off so every compile is cold. "compile s" is the first call;
"eager ms" / "compiled ms" are medians of interleaved rounds at that first shape (B=8, 32x24); then the
layer runs at three more (batch, size) pairs and "graphs" counts the frames compiled in all (1 = no
recompilation). "Conv2d+Softmax" is plain PyTorch, a 1x1 conv, then a 3x3 conv whose output a softmax
normalises (as FreqFusion's kernel generators do). ``--no-layout-optimization`` sets
``torch._inductor.config.layout_optimization = False`` (inductor's channels-last convs on CPU).

``--network`` instead compiles whole networks, as users do (``torch.compile(model)``): torchvision's ResNet-18, plain
and with every conv converted to FDConv (``kernel_num=16``), B=2 at each listed square size, each compile cold in a
fresh inductor cache directory; "compile vs plain" is the converted network's compile time over the plain one's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")
os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")

import torch
import torch._dynamo as dynamo
import torch.nn as nn
from torch._dynamo.utils import counters

from freqdyn import DynamicConv2d, FDConv, FreqFusion, ODConv2d, convert
from freqdyn.tools.timing import interleaved_times_ms, machine_line

LAYERS: dict[str, Callable[[], nn.Module]] = {
    "nn.Conv2d": lambda: nn.Conv2d(64, 64, 3, padding=1),
    "Conv2d+Softmax": lambda: nn.Sequential(nn.Conv2d(64, 64, 1), nn.Conv2d(64, 9, 3, padding=1), nn.Softmax(dim=1)),
    "DY-Conv": lambda: DynamicConv2d(64, 64, 3, padding=1),
    "ODConv": lambda: ODConv2d(64, 64, 3, padding=1),
    "FDConv": lambda: FDConv(64, 64, 3, padding=1, kernel_num=64),
    "FreqFusion": lambda: FreqFusion(64, 64),
}
SHAPES = [(8, 32, 24), (4, 32, 24), (6, 20, 28), (2, 44, 36)]  # H != W: no duck-sizing recompiles


def inputs(name: str, batch: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    if name == "FreqFusion":
        return torch.randn(batch, 64, height, width), torch.randn(batch, 64, height // 2, width // 2)
    return (torch.randn(batch, 64, height, width),)


def call(module: Callable[..., object], args: tuple[torch.Tensor, ...], train: bool) -> Callable[[], None]:
    def run() -> None:
        if train:
            out = module(*args)
            (sum(o.sum() for o in out) if isinstance(out, tuple) else out.sum()).backward()
        else:
            with torch.no_grad():
                module(*args)

    return run


def resnet18(converted: bool) -> nn.Module:
    """torchvision's ResNet-18, every conv converted to FDConv (K=16) if ``converted``."""
    import torchvision

    model = torchvision.models.resnet18()
    if converted:
        convert(model, "fdconv", kernel_num=16)
    return model


def network_table(sizes: list[int], modes: list[bool], rounds: int) -> None:
    """The ``--network`` table: plain and converted ResNet-18, compiled against eager, B=2 at each size."""
    print("| network | size | mode | compile s | compile vs plain | eager ms | compiled ms | compiled vs eager |")
    print("|---|---|---|---|---|---|---|---|")
    for size in sizes:
        x = (torch.randn(2, 3, size, size),)
        for train in modes:
            plain_s = 0.0
            for converted in (False, True):
                dynamo.reset()
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-")  # a cold compile
                torch.manual_seed(0)
                model = resnet18(converted).train(train)
                compiled = torch.compile(model)
                start = time.perf_counter()
                call(compiled, x, train)()
                compile_s = time.perf_counter() - start
                plain_s = plain_s or compile_s
                times = interleaved_times_ms(
                    {"eager": call(model, x, train), "compiled": call(compiled, x, train)}, rounds
                )
                eager, fast = (sorted(times[k])[len(times[k]) // 2] for k in ("eager", "compiled"))
                name = "ResNet-18 + FDConv" if converted else "ResNet-18"
                print(
                    f"| {name} | {size}^2 | {'train' if train else 'eval'} | {compile_s:.0f} | "
                    f"{compile_s / plain_s:.2f}x | {eager:.0f} | {fast:.0f} | {fast / eager:.2f}x |",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="nn.Conv2d and FDConv in eval only")
    parser.add_argument("--layers", default=",".join(LAYERS), help="comma-separated subset of the table")
    parser.add_argument("--modes", default="eval,train", help="comma-separated subset of eval,train")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument(
        "--no-layout-optimization",
        action="store_true",
        help="inductor without its channels-last conv layouts (default: inductor's own choice)",
    )
    parser.add_argument("--network", default="", help="comma-separated sizes: the whole-network table instead")
    args = parser.parse_args()
    names = ["nn.Conv2d", "FDConv"] if args.quick else args.layers.split(",")
    modes = [False] if args.quick else [mode == "train" for mode in args.modes.split(",")]
    layout = ""
    if args.no_layout_optimization:
        import torch._inductor.config as inductor_config

        inductor_config.layout_optimization = False
        layout = ", layout_optimization=False"
    if args.network:
        print(f"{machine_line()}, torch.compile(model), B=2, inductor caches cold{layout}")
        network_table([int(size) for size in args.network.split(",")], modes, args.rounds)
        return
    print(f"{machine_line()}, torch.compile(dynamic=True), inductor caches off{layout}")
    print("| layer | mode | compile s | graphs over 4 shapes | eager ms | compiled ms | compiled vs eager |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        for train in modes:
            dynamo.reset()
            counters.clear()
            torch.manual_seed(0)
            layer = LAYERS[name]().train(train)
            compiled = torch.compile(layer, dynamic=True)
            start = time.perf_counter()
            call(compiled, inputs(name, *SHAPES[0]), train)()
            compile_s = time.perf_counter() - start
            x = inputs(name, *SHAPES[0])
            times = interleaved_times_ms(
                {"eager": call(layer, x, train), "compiled": call(compiled, x, train)}, args.rounds
            )
            eager, fast = (sorted(times[k])[len(times[k]) // 2] for k in ("eager", "compiled"))
            try:
                for shape in SHAPES[1:]:
                    call(compiled, inputs(name, *shape), train)()
                graphs = str(counters["stats"]["unique_graphs"])
            except Exception as err:  # report torch's own failures in the table instead of stopping
                graphs = f"{counters['stats']['unique_graphs']}, then {type(err).__name__}"
            print(
                f"| {name} | {'train' if train else 'eval'} | {compile_s:.0f} | {graphs} | {eager:.1f} | "
                f"{fast:.1f} | {fast / eager:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
