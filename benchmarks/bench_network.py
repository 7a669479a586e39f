"""Whole networks with FDConv against their plain versions: time, memory saved for backward, peak memory.

    python benchmarks/bench_network.py [--quick] [--rounds 3] [--kernel-num 64] [--profile]

torchvision ResNet-50 with conv1/conv2/conv3 of every bottleneck converted (``convert(model, "fdconv",
exclude="downsample", kernel_num=64)``, the paper's setting) against the unmodified ResNet-50, and the
naive reference of the official algorithm (``freqdyn.tools.reference.naive_fdconv`` in every converted layer),
all in one interleaved run: medians over rounds with [min-max]. Then the memory autograd saves for backward
and the peak resident memory a training step adds (a fresh process, after one warm-up step, with glibc's
mmap threshold fixed so that freed tensors leave the resident set), per stage (stem, layer1..4, head) with
``--profile``, plus the ops that take the time.

Dense-prediction rows (a training step at B=2, 512^2 and inference at B=1, 800 x 1216) run the backbone only
(stem to layer4, as a detector or segmentor uses it); the classification rows run the whole network. The
per-stage table is ``benchmarks/bench_stages.py``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import subprocess
import sys

import torch
import torch.nn as nn

from freqdyn import FDConv, convert
from freqdyn.tools.reference import naive_fdconv
from freqdyn.tools.timing import interleaved_times_ms, machine_line, peak_rss_mb, unsteady

STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4", "fc")


class NaiveFDConv(nn.Module):
    """An FDConv whose forward is the naive reference of the official algorithm (same parameters)."""

    def __init__(self, layer: FDConv) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return naive_fdconv(self.layer, x)


def build(kernel_num: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    import torchvision

    plain = torchvision.models.resnet50()
    fd = copy.deepcopy(plain)
    convert(fd, "fdconv", exclude=r"downsample", kernel_num=kernel_num)
    naive = copy.deepcopy(fd)
    _naive_layers(naive)
    return {"ResNet-50": plain, "FDConv (freqdyn)": fd, "official algorithm (naive)": naive}


def build_yolo() -> dict[str, nn.Module]:
    """Stock YOLOv8n-pose and the seed's yolov8n-pose-C2f_FDConv (ultralytics' own parser, via register())."""
    from ultralytics import YOLO

    from freqdyn.integrations import ultralytics as fu

    torch.manual_seed(0)
    plain = YOLO("yolov8n-pose.yaml").model
    fu.register()
    fd = YOLO(fu.model_yaml("n")).model
    fu.unregister()
    naive = copy.deepcopy(fd)
    _naive_layers(naive)
    return {"YOLOv8n-pose": plain, "C2f_FDConv (freqdyn)": fd, "official algorithm (naive)": naive}


def backbone(model: nn.Module) -> nn.Module:
    """A torchvision ResNet without its pooling and classifier (stem to layer4): (B, 3, H, W) -> (B, 2048, H/32,
    W/32), the modules shared with ``model``."""
    return nn.Sequential(*list(model.children())[:-2])


def _naive_layers(model: nn.Module) -> None:
    for name, module in list(model.named_modules()):
        if isinstance(module, FDConv):
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, NaiveFDConv(module))


def total(out) -> torch.Tensor:
    """Sum of every tensor in a (nested) network output: a loss that reaches every head."""
    if isinstance(out, torch.Tensor):
        return out.sum()
    if isinstance(out, dict):
        out = list(out.values())
    return sum(total(o) for o in out)


def spread(times: list[float], base: list[float]) -> str:
    median, ref = times[len(times) // 2], base[len(base) // 2]
    return f"{median / ref:.2f}x [{times[0] / ref:.2f}-{times[-1] / ref:.2f}]"


def saved_by_stage(model: nn.Module, step) -> dict[str, float]:
    """MB saved for backward during ``step()``, attributed to the top-level stage running at the time."""
    current = ["other"]
    totals: dict[str, dict[int, int]] = {}
    handles = []
    for stage in STAGES:
        module = getattr(model, stage, None)
        if module is not None:
            handles.append(module.register_forward_pre_hook(lambda m, i, s=stage: current.__setitem__(0, s)))
            handles.append(module.register_forward_hook(lambda m, i, o: current.__setitem__(0, "other")))

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        totals.setdefault(current[0], {})[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    for h in handles:
        h.remove()
    seen: set[int] = set()
    out = {}
    for stage, storages in totals.items():  # a storage counts once, for the first stage that saved it
        out[stage] = sum(n for ptr, n in storages.items() if ptr not in seen) / 2**20
        seen.update(storages)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B=4 160^2 training and B=1 inference only")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kernel-num", type=int, default=64)
    parser.add_argument("--profile", action="store_true", help="per-stage saved memory and the top ops of a step")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive reference (slow)")
    parser.add_argument("--yolo", action="store_true", help="also YOLOv8n-pose against the seed's C2f_FDConv model")
    parser.add_argument("--no-resnet", action="store_true", help="skip ResNet-50 (with --yolo: YOLO only)")
    parser.add_argument("--peak-of", help=argparse.SUPPRESS)  # child process: one network's first training step
    args = parser.parse_args()
    if args.peak_of:
        family, batch, size, name = args.peak_of.split(":", 3)
        model = (build(args.kernel_num) if family == "resnet" else build_yolo())[name].train()
        if family == "resnet" and int(size) > 224:
            model = backbone(model)
        x = torch.randn(int(batch), 3, int(size), int(size))
        total(model(x)).backward()  # warm-up: the steady state of training is what is measured
        model.zero_grad(set_to_none=True)
        print(peak_rss_mb(lambda: total(model(x)).backward()))
        return
    print(machine_line() + f", kernel_num={args.kernel_num} (ResNet-50), ultralytics defaults (YOLO)")
    resnet_runs = [("eval", 1, (224, 224)), ("train", 4, (160, 160))]
    resnet_memory = [(4, 160)]
    if not args.quick:
        resnet_runs = [
            ("train", 2, (512, 512)),
            ("eval", 1, (800, 1216)),
            ("train", 8, (224, 224)),
            ("eval", 1, (224, 224)),
        ]
        resnet_memory = [(2, 512), (8, 224)]
    families = (
        []
        if args.no_resnet
        else [
            (
                "resnet",
                "ResNet-50 (bottleneck convs -> FDConv)",
                lambda: build(args.kernel_num),
                resnet_runs,
                resnet_memory,
            )
        ]
    )
    if args.yolo:
        families.append(
            (
                "yolo",
                "YOLOv8n-pose (the seed's C2f_FDConv YAML)",
                build_yolo,
                [("train", 2, (320, 320)), ("eval", 1, (640, 640))],
                [(2, 320)],
            )
        )
    for family, title, factory, runs, memory in families:
        models = factory()
        if args.no_naive:
            models.pop("official algorithm (naive)")
        run_family(family, title, models, runs, memory, args)
        del models
        gc.collect()


def _dense(family: str, size: tuple[int, int]) -> bool:
    """Whether a run is a dense-prediction one: a ResNet above classification sizes runs its backbone only."""
    return family == "resnet" and max(size) > 224


def run_family(
    family: str, title: str, models: dict[str, nn.Module], runs, memory: list[tuple[int, int]], args
) -> None:
    names = list(models)
    print(f"\n### {title}\n")
    print("| run | " + " | ".join(names) + f" | {names[0]} ms |")
    print("|---" * (len(names) + 2) + "|")
    for mode, batch, size in runs:
        torch.manual_seed(1)
        x = torch.randn(batch, 3, *size)
        dense = _dense(family, size)

        def call(model: nn.Module, mode: str = mode, x: torch.Tensor = x, dense: bool = dense):
            model = backbone(model) if dense else model
            if mode == "eval":
                model.eval()
                return lambda: _no_grad(model, x)
            model.train()
            return lambda: total(model(x)).backward()

        times = interleaved_times_ms({n: call(m) for n, m in models.items()}, args.rounds)
        base = times[names[0]]
        label = (
            f"{'inference' if mode == 'eval' else 'train step'} B={batch} {size[0]}x{size[1]}"
            + (" (backbone)" if dense else "")
            + (" (unsteady)" if unsteady(times) else "")
        )
        print(
            f"| {label} | " + " | ".join(spread(times[n], base) for n in names) + f" | {base[len(base) // 2]:.0f} |",
            flush=True,
        )
        for m in models.values():
            m.zero_grad(set_to_none=True)
        gc.collect()
    for mem_batch, mem_size in memory:
        stages = memory_table(family, models, mem_batch, mem_size, args.kernel_num)
    if args.profile and family == "resnet":
        print(f"\nSaved for backward per stage at B={mem_batch}, {mem_size}^2 (MB):\n")
        print("| network | " + " | ".join(STAGES) + " |")
        print("|---" * (len(STAGES) + 1) + "|")
        for name, per in stages.items():
            print(f"| {name} | " + " | ".join(f"{per.get(s, 0.0):.0f}" for s in STAGES) + " |")
        model = models[names[1]].train()
        x = torch.randn(mem_batch, 3, mem_size, mem_size)
        model = backbone(model) if _dense(family, (mem_size, mem_size)) else model
        with torch.profiler.profile() as prof:
            total(model(x)).backward()
        print(f"\nTop ops of one {names[1]} training step at B={mem_batch}, {mem_size}^2 (self CPU time):\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def memory_table(
    family: str, models: dict[str, nn.Module], batch: int, size: int, kernel_num: int
) -> dict[str, dict[str, float]]:
    """Print saved-for-backward and peak memory of one training step; return the saved MB per stage."""
    x = torch.randn(batch, 3, size, size)
    dense = _dense(family, (size, size))
    print(f"\nMemory of one training step at B={batch}, {size}^2{' (backbone)' if dense else ''} (CPU):\n")
    print("| network | saved for backward MB | vs plain | peak RSS added MB | vs plain |")
    print("|---|---|---|---|---|")
    base_saved = base_peak = None
    stages = {}
    for name, model in models.items():
        model.train()

        net = backbone(model) if dense else model

        def step(net: nn.Module = net) -> None:
            total(net(x)).backward()

        stages[name] = saved_by_stage(model, step)
        saved = sum(stages[name].values())
        model.zero_grad(set_to_none=True)
        gc.collect()
        # a fresh process whose glibc returns every large block on free (fixed mmap threshold), so the
        # high-water mark is the peak of live memory, not of the heap glibc keeps after freeing
        child = [
            sys.executable,
            __file__,
            "--peak-of",
            f"{family}:{batch}:{size}:{name}",
            "--kernel-num",
            str(kernel_num),
        ]
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        peak = float(subprocess.run(child, capture_output=True, text=True, check=True, env=env).stdout.split()[-1])
        base_saved = base_saved or saved
        base_peak = base_peak or peak
        print(
            f"| {name} | {saved:.0f} | {saved / base_saved:.2f}x | {peak:.0f} | {peak / base_peak:.2f}x |", flush=True
        )
    return stages


def _no_grad(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


if __name__ == "__main__":
    main()
