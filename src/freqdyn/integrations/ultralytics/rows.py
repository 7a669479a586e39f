"""The modules freqdyn's ultralytics rows build (public, pickled into every checkpoint of a model using them)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from ...layers import FreqFusion
from ...targets import TARGETS


class DynamicConvBNAct(nn.Module):
    """A freqdyn conv + BatchNorm + activation: ultralytics' ``Conv`` contract (c1 -> c2, autopad), not its class."""

    def __init__(self, conv: nn.Module, bn: nn.BatchNorm2d, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    @classmethod
    def from_conv_block(cls, block: Any, to: str, **kwargs) -> nn.Module:
        """Convert an ultralytics ``Conv`` (conv, bn, act), keeping its weights: equal output at neutral attention;
        ``block`` itself where the target's gating keeps its conv plain (FDConv: <= 16 channels).
        """
        conv = TARGETS[to].convert(block.conv, **kwargs)
        return block if conv is block.conv else cls(conv, block.bn, block.act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class C2f_FDConv(nn.Module):
    """Ultralytics ``C2f`` whose bottleneck 3x3 convs (``m[i].cv2``) are FDConv + BN + act; same forward."""

    def __init__(self, c2f: Any, **fdconv_kwargs) -> None:
        from ultralytics.nn.modules.block import Bottleneck

        super().__init__()
        self.c = c2f.c
        self.cv1, self.cv2, self.m = c2f.cv1, c2f.cv2, c2f.m
        bottlenecks: list[Any] = [m for m in self.m.modules() if isinstance(m, Bottleneck)]
        for bottleneck in bottlenecks:  # Any: ultralytics types cv2 as its Conv
            bottleneck.cv2 = DynamicConvBNAct.from_conv_block(bottleneck.cv2, "fdconv", **fdconv_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class C3k2_FDConv(C2f_FDConv):
    """Ultralytics ``C3k2`` (YOLO11's C2f) whose bottleneck 3x3 convs are FDConv + BN + act, at any depth: in its
    ``Bottleneck`` blocks, inside its ``C3k`` blocks (``c3k=True``, the m/l/x scales) and beside its attention
    blocks; the forward is C2f's, as C3k2's.
    """


class FreqFusionConcat(nn.Module):
    """Replaces an ``nn.Upsample`` + ``Concat`` pair: inputs [lr (B, c_lr, h, w), hr (B, c_hr, H, W)], H = 2h
    (up to rounding) -> cat(FreqFusion's lr_out, hr_out), (B, c_lr + c_hr, H, W): Concat's channel layout.
    """

    def __init__(self, lr_channels: int, hr_channels: int, **fusion_kwargs) -> None:
        super().__init__()
        fusion_kwargs.setdefault("compressed_channels", max((lr_channels + hr_channels) // 8 // 8 * 8, 8))
        self.fusion = FreqFusion(hr_channels, lr_channels, **fusion_kwargs)

    def forward(self, x: list[Tensor]) -> Tensor:
        lr, hr = x
        hr_out, lr_out = self.fusion(hr, lr)
        return torch.cat([lr_out, hr_out], 1)
