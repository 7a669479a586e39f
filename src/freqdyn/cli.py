"""``freqdyn`` command line: ``freqdyn demo`` is the project's main job."""
from __future__ import annotations

import argparse
import logging
import sys

import torch
import torch.nn as nn

from .convert import convert
from .layers import CondConv2d, DynamicConv2d, FDConv, ODConv2d
from .overhead import BOTTLENECK_CONVS, format_overhead, param_overhead
from .timing import best_ms

def _test_image(size: int = 224) -> torch.Tensor:
    """A deterministic natural-ish RGB test pattern (1, 3, size, size): rings, a gradient and an edge."""
    axis = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    rings = torch.cos(12 * torch.sqrt(xx**2 + yy**2))
    edge = (xx > 0.2 * torch.sin(3 * yy)).float()
    return torch.stack([rings, yy, edge])[None]


def demo(args: argparse.Namespace) -> int:
    try:
        import torchvision
    except ImportError:
        print("freqdyn demo needs torchvision: pip install 'freqdyn[dev]'", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    print("Parameter overhead on ResNet-50, measured here by conversion, next to the FDConv paper's Table 1:")
    print(format_overhead(param_overhead()))
    model = torchvision.models.resnet50().eval()
    image = _test_image()
    with torch.no_grad():
        reference = model(image)
    report = convert(model, "fdconv", include=BOTTLENECK_CONVS, kernel_num=args.kernel_num)
    print(f"\nResNet-50 -> FDConv (kernel_num={args.kernel_num}): {report}")
    with torch.no_grad():
        out = model(image)
    print(f"Neutral-attention check on a 224x224 test image: max |logit difference| vs the original "
          f"ResNet-50 = {(out - reference).abs().max().item():.2e}")
    conv = nn.Conv2d(64, 64, 3, padding=1).eval()
    x = torch.randn(8, 64, 56, 56)
    layers = {"nn.Conv2d": conv, "DY-Conv (4x)": DynamicConv2d.from_conv(conv, temperature=1.0),
              "CondConv (8x)": CondConv2d.from_conv(conv), "ODConv (4x)": ODConv2d.from_conv(conv),
              f"FDConv (K={args.kernel_num})": FDConv.from_conv(conv, kernel_num=args.kernel_num)}
    print(f"\nOne 3x3 layer, 64 -> 64 channels, batch 8 at 56x56, inference on this machine "
          f"({torch.get_num_threads()} threads):")
    with torch.no_grad():
        times = {name: best_ms(lambda m=layer.eval(): m(x)) for name, layer in layers.items()}
    for name, ms in times.items():
        print(f"  {name:<16}{ms:>8.1f} ms  ({ms / times['nn.Conv2d']:.2f}x nn.Conv2d)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="freqdyn", description="Frequency-aware dynamic convolution blocks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="ResNet-50: parameter overhead of every method, FDConv equivalence, layer timing")
    p_demo.add_argument("--kernel-num", type=int, default=64)
    p_demo.set_defaults(func=demo)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
