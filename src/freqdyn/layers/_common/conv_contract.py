"""The ``nn.Conv2d`` contract shared by FDConv and the kernel-bank convs (DY-Conv, CondConv, ODConv).

Argument normalisation and checks, the ``nn.Conv2d`` attributes that host libraries read (``in_channels``,
``kernel_size``, ``stride``, ``padding``, ``transposed`` ...), construction from an ``nn.Conv2d``, explicit
non-zero padding modes, ``init_weights`` (the name mmcv's ``ConvModule`` calls) and the ``extra_repr`` prefix.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .checks import ArgumentTypeError
from .conv_args import IntPair, Padding, check_conv_args, conv_repr, pad_input, pair
from .empty_batch import tie_to_parameters
from .program_mode import memory_format_of

C = TypeVar("C", bound="ConvContract")


def reset_bias(bias: Tensor | None, fan_in: int) -> None:
    """``nn.Conv2d``'s (and ``nn.Linear``'s) default bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    if bias is not None:
        nn.init.uniform_(bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))


class ConvContract(nn.Module):
    """Mixin base of layers that replace an ``nn.Conv2d``; subclasses call :meth:`_set_conv_args` first."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: Padding
    dilation: tuple[int, int]
    groups: int
    padding_mode: str
    bias: Tensor | None
    channels_last = False  # whether .to(memory_format=torch.channels_last) converted the layer (see _apply)

    def _set_conv_args(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair,
        padding: Padding,
        dilation: IntPair,
        groups: int,
        padding_mode: str,
    ) -> None:
        """Check the ``nn.Conv2d`` arguments (``ValueError`` naming the bad one) and set its attributes."""
        kernel, step, spacing = pair(kernel_size, "kernel_size"), pair(stride, "stride"), pair(dilation, "dilation")
        in_channels, out_channels, groups, padding = check_conv_args(
            in_channels, out_channels, kernel, step, padding, spacing, groups, padding_mode
        )
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel
        self.stride, self.padding, self.dilation, self.groups = step, padding, spacing, groups
        self.padding_mode = padding_mode
        self.transposed, self.output_padding = False, (0, 0)

    @classmethod
    def _like(cls: type[C], conv: nn.Conv2d, **kwargs: Any) -> C:
        """A layer with ``conv``'s arguments, device and dtype (weights not copied)."""
        if not isinstance(conv, nn.Conv2d):
            raise ArgumentTypeError(f"from_conv expects an nn.Conv2d, got {type(conv).__name__}")
        return cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
            **kwargs,
        )

    def _apply(self, fn, recurse: bool = True):
        """Record a ``.to(memory_format=...)`` conversion: ``nn.Conv2d`` keeps it in its weight's strides (and then
        returns channels-last outputs for any input), but these layers hold their kernels in other layouts, so
        a probe tensor goes through the same conversion (``.half()``, ``.cuda()``, ``to_empty()`` keep its layout).
        """
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        self.channels_last = memory_format_of(fn(torch.empty(1, 2, 1, 2, memory_format=layout))) == torch.channels_last
        return super()._apply(fn, recurse)

    def _layout_input(self, x: Tensor) -> Tensor:
        """x channels-last for a layer converted to channels-last, so that the work runs in that layout."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _layout_output(self, out: Tensor) -> Tensor:
        """``out`` in ``nn.Conv2d``'s memory format: it is already channels-last for a channels-last (padded) input;
        this makes it channels-last also when the layer was converted, as a channels-last weight does in
        ``nn.Conv2d``.
        """
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def _pad(self, x: Tensor) -> tuple[Tensor, Padding]:
        """x padded explicitly for a non-zero ``padding_mode``, and the padding left for ``F.conv2d``."""
        return pad_input(x, self.padding, self.kernel_size, self.dilation, self.padding_mode)

    def _empty_batch(self, x: Tensor) -> Tensor:
        """The (0, O, H', W') output of an empty batch x (0, I, H, W), as ``nn.Conv2d`` gives it, every parameter
        with a zero gradient (:mod:`freqdyn.layers._common.empty_batch`).
        """
        x, padding = self._pad(x)
        kernel = x.new_zeros(self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        out = F.conv2d(x, kernel, None, self.stride, padding, self.dilation, self.groups)
        return tie_to_parameters(self._layout_output(out), self)

    def reset_parameters(self) -> None:
        raise NotImplementedError

    def init_weights(self) -> None:
        """mmcv's ``ConvModule`` calls ``init_weights()`` instead of its kaiming init: the layer's own init."""
        self.reset_parameters()

    def extra_repr(self) -> str:
        return conv_repr(self)
