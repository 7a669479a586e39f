"""FLOP and parameter counts of any model with freqdyn layers: ``freqdyn.profile(model, input_shape)``.

Convention: FLOPs = 2 x multiply-accumulates, as ``torch.utils.flop_counter.FlopCounterMode``, whose counts
(convolutions and matrix products: every attention branch, per-sample kernel mixing and the convolution
itself) are the base. Added on top, because FlopCounterMode reports 0 for them or counts more than the work:

* FFTs (FDConv's per-sample weight synthesis): 2.5 N log2 N FLOPs for a real FFT of N points, 5 N log2 N
  for a complex one, per transformed signal;
* CARAFE reassembly (FreqFusion): 2 k^2 FLOPs per output element (its batched matmuls also run over a few
  wrapped columns per row: those are taken off);
* DCNv3's deformable sampling: 2 x 5 FLOPs per output value and sampling point (4 bilinear taps and the
  modulation);
* in-place batched matmul-accumulates (``baddbmm_``: FBM's separable route), counted like ``baddbmm``.

Other element-wise work (activations, attention products, normalisation) is not counted, as in
FlopCounterMode and fvcore.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from .layers import flop_recording
from .layers.catalog import FREQDYN_LAYERS, is_dynamic


def _transform_size(shape: Sequence[int], dims: Sequence[int]) -> int:
    return math.prod(shape[d] for d in dims)


def _fft_flops(points: int, batch: int, per_point: float) -> int:
    return int(batch * per_point * points * math.log2(points)) if points > 1 else 0


def _r2c(x_shape, dim, normalization, onesided, out_shape=None, **kwargs) -> int:
    points = _transform_size(x_shape, dim)
    return _fft_flops(points, math.prod(x_shape) // points, 2.5)


def _c2r(x_shape, dim, normalization, last_dim_size, out_shape=None, **kwargs) -> int:
    points = _transform_size(x_shape, dim[:-1]) * last_dim_size
    return _fft_flops(points, math.prod(x_shape) // _transform_size(x_shape, dim), 2.5)


def _c2c(x_shape, dim, normalization, forward, out_shape=None, **kwargs) -> int:
    points = _transform_size(x_shape, dim)
    return _fft_flops(points, math.prod(x_shape) // points, 5.0)


def _baddbmm(self_shape, a_shape, b_shape, out_shape=None, **kwargs) -> int:
    batch, rows, inner = a_shape
    return 2 * batch * rows * inner * b_shape[-1]


EXTRA_FORMULAS = {
    torch.ops.aten._fft_r2c: _r2c,
    torch.ops.aten._fft_c2r: _c2r,
    torch.ops.aten._fft_c2c: _c2c,
    torch.ops.aten.baddbmm_: _baddbmm,
}


@dataclass
class LayerCost:
    """One outermost freqdyn layer of a profile: its name, class, parameters and FLOPs of the forward pass."""

    name: str
    kind: str
    params: int
    flops: int


@dataclass
class Profile:
    """Totals of one forward pass, and the cost of every outermost freqdyn layer."""

    input_shapes: list[tuple[int, ...]]
    flops: int
    params: int
    layers: list[LayerCost] = field(default_factory=list)
    first_conv_input: tuple[int, ...] | None = None  # what the first convolution saw (a detector resizes inside)

    def __str__(self) -> str:
        lines = [
            f"input {', '.join(str(s) for s in self.input_shapes)}: {self.flops / 1e9:.3f} GFLOPs, "
            f"{self.params / 1e6:.3f}M params"
        ]
        if self.layers:
            lines.append(f"  {'layer':<40}{'kind':<18}{'params':>12}{'GFLOPs':>10}")
            lines += [f"  {c.name:<40}{c.kind:<18}{c.params:>12,}{c.flops / 1e9:>10.4f}" for c in self.layers]
        return "\n".join(lines)


def profile(model: nn.Module, input_shape: Sequence[int] | Sequence[Sequence[int]]) -> Profile:
    """Count FLOPs (see the module docstring) and parameters of ``model`` on random inputs of ``input_shape``.

    ``input_shape`` is one shape, or a list of shapes for models with several inputs (FreqFusion).
    The model runs twice under no_grad, in its current train / eval mode; the first pass is a warm-up (FBM
    builds its size-keyed band operators), the second is counted.

    Args:
        model: any module.
        input_shape: the input shape, or a list of shapes.

    Returns:
        A :class:`Profile`: total FLOPs and parameters, a row per freqdyn layer, and the input shape of the first
        convolution that ran (``first_conv_input``: a torchvision detector resizes its input inside, so its FLOPs are
        those of that size).

    Examples:
        >>> from freqdyn import FDConv
        >>> result = profile(torch.nn.Sequential(FDConv(32, 32, 3, padding=1, kernel_num=8)), (1, 32, 16, 16))
        >>> result.params > 32 * 32 * 9, result.flops > 2 * 32 * 32 * 9 * 16 * 16
        (True, True)
    """
    nested = not isinstance(input_shape[0], int)
    many = cast(Sequence[Sequence[int]], input_shape)
    shapes = [tuple(s) for s in many] if nested else [tuple(cast(Sequence[int], input_shape))]
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    inputs = [torch.randn(s, device=device, dtype=dtype) for s in shapes]
    with torch.no_grad():
        model(*inputs)
    names = {id(m): name for name, m in model.named_modules()}
    stack: list[str] = []
    extra: dict[str, int] = {}

    first_conv: list[tuple[int, ...]] = []

    def push(module, args):
        stack.append(names.get(id(module), ""))
        conv = isinstance(module, nn.Conv2d) or is_dynamic(module)
        if not first_conv and conv and args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
            first_conv.append(tuple(args[0].shape))

    def pop(module, args, output):
        stack.pop()

    handles = [m.register_forward_pre_hook(push) for m in model.modules()]
    handles += [m.register_forward_hook(pop) for m in model.modules()]

    def record(flops: int) -> None:
        owner = stack[-1] if stack else ""
        extra[owner] = extra.get(owner, 0) + flops

    try:
        with (
            flop_recording(record),
            torch.no_grad(),
            FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS) as counter,
        ):
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    counts = counter.get_flop_counts()
    root = type(model).__name__

    def counted(name: str) -> int:
        key = root if name == "" else f"{root}.{name}"
        inside = sum(v for n, v in extra.items() if n == name or name == "" or n.startswith(name + "."))
        return sum(counts.get(key, {}).values()) + inside

    layers: list[LayerCost] = []
    covered: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, FREQDYN_LAYERS) and not any(name.startswith(c + ".") or c == "" for c in covered):
            covered.append(name)
            params = sum(p.numel() for p in module.parameters())
            layers.append(LayerCost(name or root, type(module).__name__, params, counted(name)))
    total = counter.get_total_flops() + sum(extra.values())
    return Profile(
        shapes, total, sum(p.numel() for p in model.parameters()), layers, first_conv[0] if first_conv else None
    )
