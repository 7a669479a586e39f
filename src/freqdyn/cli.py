"""``freqdyn`` command line: ``freqdyn demo`` is the project's main job."""
from __future__ import annotations

import argparse
import logging
import sys

import torch
import torch.nn as nn

from .convert import convert
from .layers import FDConv
from .timing import best_ms

PAPER_DELTA = {"FDConv (paper)": 3.6e6, "CondConv (8x)": 90.0e6, "DY-Conv (4x)": 75.3e6, "ODConv (4x)": 65.1e6,
               "KW (4x)": 76.5e6}


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
    model = torchvision.models.resnet50().eval()
    image = _test_image()
    with torch.no_grad():
        reference = model(image)
    report = convert(model, "fdconv", exclude=r"downsample", kernel_num=args.kernel_num)
    print(f"ResNet-50 -> FDConv (kernel_num={args.kernel_num}): {report}")
    print("\nParameter overhead on ResNet-50 (published numbers from the FDConv paper, Table 1):")
    print(f"  {'method':<16}{'overhead':>12}")
    print(f"  {'FDConv (here)':<16}{report.param_delta / 1e6:>+11.3f}M   <- measured on this model")
    for name, delta in PAPER_DELTA.items():
        print(f"  {name:<16}{delta / 1e6:>+11.1f}M")
    with torch.no_grad():
        out = model(image)
    print(f"\nNeutral-attention check on a 224x224 test image: max |logit difference| vs the original "
          f"ResNet-50 = {(out - reference).abs().max().item():.2e}")
    conv = nn.Conv2d(64, 64, 3, padding=1).eval()
    layer = FDConv.from_conv(conv, kernel_num=args.kernel_num).eval()
    x = torch.randn(8, 64, 56, 56)
    with torch.no_grad():
        t_conv, t_fd = best_ms(lambda: conv(x)), best_ms(lambda: layer(x))
    print(f"\nOne 3x3 layer, 64 -> 64 channels, batch 8 at 56x56, on this machine "
          f"({torch.get_num_threads()} threads): nn.Conv2d {t_conv:.1f} ms, FDConv {t_fd:.1f} ms "
          f"({t_fd / t_conv:.2f}x)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="freqdyn", description="Frequency-aware dynamic convolution blocks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="ResNet-50 with FDConv: parameter overhead, equivalence, timing")
    p_demo.add_argument("--kernel-num", type=int, default=64)
    p_demo.set_defaults(func=demo)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
