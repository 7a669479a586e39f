"""``nn.Conv2d`` argument normalisation and padding shared by the dynamic convolutions."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import ArgumentTypeError, check_int

IntPair = int | tuple[int, ...]
Padding = str | int | tuple[int, ...]
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def pair(value: IntPair | Sequence[int], name: str) -> tuple[int, int]:
    """Return ``value`` as a tuple of two ints (numpy integers accepted), else :class:`ArgumentTypeError`."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    out = tuple(value) if isinstance(value, Iterable) and not isinstance(value, str | bytes) else ()
    if len(out) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in out):
        raise ArgumentTypeError(f"{name} must be an int or a pair of ints, got {type(value).__name__} {value!r}")
    return int(out[0]), int(out[1])


def check_conv_args(
    in_channels: int,
    out_channels: int,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: Padding,
    dilation: tuple[int, int],
    groups: int,
    padding_mode: str,
) -> tuple[int, int, int, Padding]:
    """Validate ``nn.Conv2d``-style arguments; return in_channels, out_channels, groups (ints) and the padding."""
    in_channels, out_channels = check_int(in_channels, "in_channels"), check_int(out_channels, "out_channels")
    groups = check_int(groups, "groups")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
    if min(kernel_size) <= 0 or min(stride) <= 0 or min(dilation) <= 0:
        raise ValueError(f"kernel_size, stride and dilation must be positive, got {kernel_size}, {stride}, {dilation}")
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding string must be 'same' or 'valid', got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions")
        return in_channels, out_channels, groups, padding
    pad = pair(padding, "padding")
    if min(pad) < 0:
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return in_channels, out_channels, groups, pad


def explicit_padding(padding: Padding, kernel_size: tuple[int, int], dilation: tuple[int, int]) -> list[int]:
    """``F.pad`` amounts (left, right, top, bottom) equivalent to ``padding`` (as ``nn.Conv2d`` computes them)."""
    if padding == "valid":
        return [0, 0, 0, 0]
    if padding == "same":
        pads: list[int] = []
        for k, d in zip(reversed(kernel_size), reversed(dilation), strict=True):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return pads
    if isinstance(padding, str):
        raise ValueError(f"padding must be 'valid', 'same', an int or a pair of ints, got {padding!r}")
    ph, pw = pair(padding, "padding")
    return [pw, pw, ph, ph]


def pad_input(
    x: Tensor, padding: Padding, kernel_size: tuple[int, int], dilation: tuple[int, int], padding_mode: str
) -> tuple[Tensor, Padding]:
    """Apply non-zero padding modes explicitly; returns the input and the padding left for ``F.conv2d``."""
    if padding_mode == "zeros":
        return x, padding
    return F.pad(x, explicit_padding(padding, kernel_size, dilation), mode=padding_mode), (0, 0)


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: Padding,
    dilation: tuple[int, int],
    groups: int,
) -> Tensor:
    """``F.conv2d``, calling ``aten::convolution`` itself for numeric padding outside autocast (one dispatched op
    fewer; autocast casts for ``conv2d``, not for ``convolution``).
    """
    if isinstance(padding, str) or torch.is_autocast_enabled(x.device.type):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    pads = (padding, padding) if isinstance(padding, int) else padding
    return torch.convolution(x, weight, bias, stride, pads, dilation, False, (0, 0), groups)


def conv_repr(module) -> str:
    """``nn.Conv2d``-style ``extra_repr`` prefix of a layer with the usual convolution attributes."""
    s = f"{module.in_channels}, {module.out_channels}, kernel_size={module.kernel_size}, stride={module.stride}"
    if module.padding != (0, 0):
        s += f", padding={module.padding}"
    if module.dilation != (1, 1):
        s += f", dilation={module.dilation}"
    if module.groups != 1:
        s += f", groups={module.groups}"
    if module.bias is None:
        s += ", bias=False"
    if module.padding_mode != "zeros":
        s += f", padding_mode={module.padding_mode}"
    return s
