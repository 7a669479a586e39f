"""The layer zoo: every public layer, in the configurations the property tests sweep, each with a builder and its
example inputs. tests/properties/ reads it (state, host syncs, empty batches, compile, torch.func, export,
validation), so a layer added here is swept by each of them.

An entry's input factory takes ``batch`` and ``size`` (the spatial size, or the token count, of its first input),
so that a property can vary them: ``inputs()`` is the example, ``inputs(3, (10, 6))`` the same layer's input at
batch 3 and 10 x 6.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn as nn

from freqdyn import (
    MRFA,
    CondConv2d,
    DCNv3,
    DropPath,
    DynamicConv2d,
    FDConv,
    FDLinear,
    FDLinearQwen,
    FreqFusion,
    FreqFusionFPN,
    FrequencyBandModulation,
    KWConv1d,
    KWConv2d,
    KWConv3d,
    LayerNorm2d,
    ODConv2d,
    StarReLU,
    UniConvNetBlock,
)

Inputs = Callable[..., tuple]  # (batch: int = ..., size: tuple[int, ...] = ...) -> the layer's positional inputs


class Case(NamedTuple):
    build: Callable[[], nn.Module]
    inputs: Inputs


def maps(channels: int, *size: int, batch: int = 2) -> Inputs:
    """Channels-first inputs (B, C, *size): images, signals, volumes."""
    return lambda batch=batch, size=size: (torch.randn(batch, channels, *size),)


def last(channels: int, *size: int, batch: int = 2) -> Inputs:
    """Channels-last inputs (B, *size, C): token sequences, NHWC maps, plain features (no size)."""
    return lambda batch=batch, size=size: (torch.randn(batch, *size, channels),)


def pyramid(channels: list[int], height: int, width: int) -> Callable[..., list[torch.Tensor]]:
    """Maps of halving sizes (each the ceiling of half the one before), ``channels`` from the finest."""

    def make(batch: int = 2, size: tuple[int, int] = (height, width)) -> list[torch.Tensor]:
        h, w, levels = *size, []
        for c in channels:
            levels.append(torch.randn(batch, c, h, w))
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return levels

    return make


def pair(hr: int, lr: int, height: int, width: int) -> Inputs:
    """FreqFusion's (hr, lr) inputs: lr at half hr's size."""
    levels = pyramid([hr, lr], height, width)
    return lambda batch=2, size=(height, width): tuple(levels(batch, size))


def levels(channels: list[int], height: int, width: int) -> Inputs:
    """A neck's one input: the list of pyramid levels."""
    make = pyramid(channels, height, width)
    return lambda batch=2, size=(height, width): (make(batch, size),)


# each builder builds the same architecture from any seed
ZOO: dict[str, Case] = {
    "fdconv": Case(lambda: FDConv(24, 32, 3, padding=1, kernel_num=8), maps(24, 9, 7)),
    "fdconv-k1-no-fbm": Case(lambda: FDConv(32, 24, 1, kernel_num=4, param_ratio=2), maps(32, 5, 6)),
    "fdconv-exact": Case(
        lambda: FDConv(24, 24, 3, padding=1, kernel_num=8, fbm_masks="exact", freq_grouping="stable"), maps(24, 9, 7)
    ),
    "fdconv-narrow": Case(lambda: FDConv(16, 16, 3, padding=1, kernel_num=4), maps(16, 6, 6)),
    "fdconv-5x5": Case(lambda: FDConv(32, 32, 5, padding=2, kernel_num=4), maps(32, 6, 6)),
    "fdconv-basis": Case(lambda: FDConv(16, 16, 3, padding=1, kernel_num=4, synthesis="basis"), maps(16, 6, 6)),
    "fdconv-layer-norm": Case(
        lambda: FDConv(24, 24, 3, padding=1, kernel_num=8, attention_norm="layer"), maps(24, 9, 9)
    ),
    "fdconv-fbm-groups": Case(
        lambda: FDConv(24, 24, 3, padding=1, kernel_num=4, fbm_spatial_group=4, fbm_masks="exact"), maps(24, 7, 9)
    ),
    "fdconv-stride-feature": Case(
        lambda: FDConv(24, 32, 3, stride=2, padding=1, kernel_num=4, aggregation="feature"), maps(24, 7, 9)
    ),
    "fdlinear": Case(lambda: FDLinear(24, 40, kernel_num=4), last(24, 5, batch=3)),
    "fdlinear-qwen": Case(lambda: FDLinearQwen(24, 40, use_ksm_local=True), last(24, 5, batch=3)),
    "dyconv": Case(lambda: DynamicConv2d(8, 12, 3, padding=1, temperature=30.0), maps(8, 7, 7)),
    "condconv": Case(lambda: CondConv2d(8, 12, 3, padding=1, num_experts=3), maps(8, 7, 7)),
    "odconv": Case(lambda: ODConv2d(8, 12, 3, padding=1, temperature=5.0), maps(8, 7, 7)),
    "odconv-stride": Case(lambda: ODConv2d(8, 12, 3, stride=2, padding=1), maps(8, 7, 9)),
    "kw": Case(lambda: KWConv2d.standalone(8, 12, 3, padding=1, bias=True), maps(8, 7, 7)),
    "kw-1d": Case(lambda: KWConv1d.standalone(8, 12, 3, padding=1), maps(8, 9)),
    "kw-3d": Case(
        lambda: KWConv3d.standalone(
            8,
            12,
            3,
            padding=1,
            cell_num_ratio=0.5,
            cell_inplane_ratio=0.5,
            cell_outplane_ratio=0.5,
            nonlocal_basis_ratio=0.5,
        ),
        maps(8, 4, 5, 3),
    ),
    "fbm": Case(lambda: FrequencyBandModulation(8, spatial_group=2), maps(8, 9, 10)),
    "freqfusion": Case(lambda: FreqFusion(16, 24, compressed_channels=16, feature_resample=True), pair(16, 24, 8, 10)),
    "freqfusion-no-window": Case(
        lambda: FreqFusion(16, 24, compressed_channels=8, hamming_window=False, carafe_padding="reflect"),
        pair(16, 24, 8, 10),
    ),
    "freqfusion-odd": Case(
        lambda: FreqFusion(16, 24, compressed_channels=16, semi_conv=False, hamming_window=False),
        pair(16, 24, 9, 11),
    ),
    "fpn": Case(lambda: FreqFusionFPN([8, 16], 16), levels([8, 16], 8, 8)),
    "mrfa": Case(lambda: MRFA(16), maps(16, 9, 9)),
    "uniconvnet-block": Case(lambda: UniConvNetBlock(16, drop_path=0.1), maps(16, 9, 9)),
    "star-relu": Case(lambda: StarReLU(), last(5)),
    "layer-norm2d": Case(lambda: LayerNorm2d(6), maps(6, 3, 3)),
    "drop-path": Case(lambda: DropPath(0.2), last(6, batch=4)),
    "dcnv3": Case(lambda: DCNv3(16), last(16, 8, 8)),
}
