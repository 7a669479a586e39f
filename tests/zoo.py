"""The layer zoo: every public layer, in the configurations the property tests sweep, each with a builder and its
example inputs. tests/properties/ reads it (state, host syncs, empty batches), so a layer added here is swept by
each of them."""

from collections.abc import Callable

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

# name -> (factory, input factory); each factory builds the same architecture from any seed
ZOO: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple]]] = {
    "fdconv": (lambda: FDConv(24, 32, 3, padding=1, kernel_num=8), lambda: (torch.randn(2, 24, 9, 7),)),
    "fdconv-k1-no-fbm": (lambda: FDConv(32, 24, 1, kernel_num=4, param_ratio=2), lambda: (torch.randn(2, 32, 5, 6),)),
    "fdconv-exact": (
        lambda: FDConv(24, 24, 3, padding=1, kernel_num=8, fbm_masks="exact", freq_grouping="stable"),
        lambda: (torch.randn(2, 24, 9, 7),),
    ),
    "fdconv-narrow": (lambda: FDConv(16, 16, 3, padding=1, kernel_num=4), lambda: (torch.randn(2, 16, 6, 6),)),
    "fdconv-5x5": (lambda: FDConv(32, 32, 5, padding=2, kernel_num=4), lambda: (torch.randn(2, 32, 6, 6),)),
    "fdlinear": (lambda: FDLinear(24, 40, kernel_num=4), lambda: (torch.randn(3, 5, 24),)),
    "fdlinear-qwen": (lambda: FDLinearQwen(24, 40, use_ksm_local=True), lambda: (torch.randn(3, 5, 24),)),
    "dyconv": (lambda: DynamicConv2d(8, 12, 3, padding=1, temperature=30.0), lambda: (torch.randn(2, 8, 7, 7),)),
    "condconv": (lambda: CondConv2d(8, 12, 3, padding=1, num_experts=3), lambda: (torch.randn(2, 8, 7, 7),)),
    "odconv": (lambda: ODConv2d(8, 12, 3, padding=1, temperature=5.0), lambda: (torch.randn(2, 8, 7, 7),)),
    "kw": (lambda: KWConv2d.standalone(8, 12, 3, padding=1, bias=True), lambda: (torch.randn(2, 8, 7, 7),)),
    "kw-1d": (lambda: KWConv1d.standalone(8, 12, 3, padding=1), lambda: (torch.randn(2, 8, 9),)),
    "kw-3d": (
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
        lambda: (torch.randn(2, 8, 4, 5, 3),),
    ),
    "fbm": (lambda: FrequencyBandModulation(8, spatial_group=2), lambda: (torch.randn(2, 8, 9, 10),)),
    "freqfusion": (
        lambda: FreqFusion(16, 24, compressed_channels=16, feature_resample=True),
        lambda: (torch.randn(2, 16, 8, 10), torch.randn(2, 24, 4, 5)),
    ),
    "freqfusion-no-window": (
        lambda: FreqFusion(16, 24, compressed_channels=8, hamming_window=False, carafe_padding="reflect"),
        lambda: (torch.randn(2, 16, 8, 10), torch.randn(2, 24, 4, 5)),
    ),
    "freqfusion-odd": (
        lambda: FreqFusion(16, 24, compressed_channels=16, semi_conv=False, hamming_window=False),
        lambda: (torch.randn(2, 16, 9, 11), torch.randn(2, 24, 5, 6)),
    ),
    "fpn": (lambda: FreqFusionFPN([8, 16], 16), lambda: ((torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)),)),
    "mrfa": (lambda: MRFA(16), lambda: (torch.randn(2, 16, 9, 9),)),
    "uniconvnet-block": (lambda: UniConvNetBlock(16, drop_path=0.1), lambda: (torch.randn(2, 16, 9, 9),)),
    "star-relu": (lambda: StarReLU(), lambda: (torch.randn(2, 5),)),
    "layer-norm2d": (lambda: LayerNorm2d(6), lambda: (torch.randn(2, 6, 3, 3),)),
    "drop-path": (lambda: DropPath(0.2), lambda: (torch.randn(4, 6),)),
    "dcnv3": (lambda: DCNv3(16), lambda: (torch.randn(2, 8, 8, 16),)),
}
