"""Attention norms at small and large batches, and high learning rates: validation accuracy of a small CNN.

    python benchmarks/bench_attention_norm.py [--quick] [--seeds 2] [--high-lr-seeds 5] [--samples 2048]

Task: 4-way orientation of a noisy sinusoidal grating (random frequency, phase and colour), 16 x 16 RGB.
Network: conv stem 3 -> 32, then two 3x3 32 -> 32 layers of the kind under test (BatchNorm + ReLU after
each), global pooling, a linear classifier. Every network sees the same number of training samples at
B = 2 and at B = 16 (SGD, momentum 0.9, lr 0.05, 0.2 at B = 16 by the linear scaling rule), then is
validated in eval mode on 512 fresh samples. A third column trains at B = 8 with lr 0.3 (a high learning
rate, where the official FDConv attentions saturate: see FDConv's docstring), over ``--high-lr-seeds`` seeds.
Accuracy is the mean over seeds, [min-max] in brackets; chance is 0.25. "T=16" rows build FDConv with
``temp = kernel_temp = fbm_temp = 16``. ``'batch'`` is the official attention BatchNorm, ``'frozen'`` its fixed
statistics and ``'layer'`` the batch-independent norm (:mod:`freqdyn.layers._common.attention_norm`).
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from freqdyn import DynamicConv2d, FDConv, ODConv2d
from freqdyn.tools.timing import machine_line

LAYERS: dict[str, Callable[[], nn.Module]] = {
    "nn.Conv2d": lambda: nn.Conv2d(32, 32, 3, padding=1),
    "DY-Conv": lambda: DynamicConv2d(32, 32, 3, padding=1),
    **{
        f"ODConv '{n}'": (lambda n=n: ODConv2d(32, 32, 3, padding=1, attention_norm=n))
        for n in ("batch", "frozen", "layer")
    },
    **{
        f"FDConv '{n}'": (lambda n=n: FDConv(32, 32, 3, padding=1, kernel_num=8, attention_norm=n))
        for n in ("batch", "frozen", "layer")
    },
    **{
        f"FDConv T=16 '{n}'": (
            lambda n=n: FDConv(
                32, 32, 3, padding=1, kernel_num=8, attention_norm=n, temp=16.0, kernel_temp=16.0, fbm_temp=16.0
            )
        )
        for n in ("batch", "frozen", "layer")
    },
}


def gratings(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` images (count, 3, 16, 16) and their orientation labels in 0..3."""
    labels = torch.randint(0, 4, (count,), generator=generator)
    angle = labels.float() * math.pi / 4 + (torch.rand(count, generator=generator) - 0.5) * 0.3
    freq = 0.15 + 0.25 * torch.rand(count, generator=generator)
    phase = 2 * math.pi * torch.rand(count, generator=generator)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    proj = xx * torch.cos(angle)[:, None, None] + yy * torch.sin(angle)[:, None, None]
    wave = torch.sin(2 * math.pi * freq[:, None, None] * proj + phase[:, None, None])
    colour = torch.rand(count, 3, 1, 1, generator=generator) * 2 - 1
    images = colour * wave[:, None] + 0.6 * torch.randn(count, 3, 16, 16, generator=generator)
    return images, labels


def network(layer: Callable[[], nn.Module]) -> nn.Module:
    blocks: list[nn.Module] = [nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()]
    for _ in range(2):
        blocks += [layer(), nn.BatchNorm2d(32), nn.ReLU()]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))


def accuracy(layer: Callable[[], nn.Module], batch: int, lr: float, samples: int, seed: int) -> float:
    torch.manual_seed(seed)
    net = network(layer)
    data = torch.Generator().manual_seed(1000 + seed)
    images, labels = gratings(samples, data)
    optimiser = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    for start in range(0, samples, batch):
        loss = F.cross_entropy(net(images[start : start + batch]), labels[start : start + batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    val_images, val_labels = gratings(512, torch.Generator().manual_seed(99))
    with torch.no_grad():
        predictions = net.eval()(val_images).argmax(1)
    return (predictions == val_labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few samples and one seed, for a smoke run")
    parser.add_argument("--seeds", type=int, default=2, help="training runs per cell of the B=2 and B=16 columns")
    parser.add_argument("--high-lr-seeds", type=int, default=5, help="training runs per cell of the lr 0.3 column")
    parser.add_argument("--samples", type=int, default=2048, help="training samples seen by every network")
    args = parser.parse_args()
    seeds, high, samples = (1, 1, 64) if args.quick else (args.seeds, args.high_lr_seeds, args.samples)
    columns = [(2, 0.05, seeds), (16, 0.2, seeds), (8, 0.3, high)]  # (batch, SGD lr, seeds)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"{machine_line()}; {samples} training samples, validation accuracy (chance 0.25)")
    print("| layer | " + " | ".join(f"B={b}, lr {lr}, {n} seeds" for b, lr, n in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for name, layer in tqdm(LAYERS.items(), desc="layers", leave=False):
        cells = []
        for batch, lr, runs in columns:
            accs = [accuracy(layer, batch, lr, samples, seed) for seed in range(runs)]
            cells.append(f"{statistics.mean(accs):.2f} [{min(accs):.2f}-{max(accs):.2f}]")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
