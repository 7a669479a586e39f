"""FreqFusionFPN: a feature-pyramid neck whose top-down upsampling is FreqFusion (TPAMI 2024)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ._checks import check_feature_map, check_int
from .freq_fusion import FreqFusion
from .trace_only import TraceOnly

Features = Sequence[Tensor] | Mapping[str, Tensor]


class FreqFusionFPN(TraceOnly, nn.Module):
    """Drop-in FPN: pyramid features, highest resolution first -> same number of maps with ``out_channels``.

    lateral 1x1 convs -> top-down fusion ``p_i = hr_out + lr_out`` of ``FreqFusion(p_i, p_{i+1})`` -> 3x3
    output convs. Accepts a list / tuple (returns a tuple, as mmdet's FPN) or a dict (returns an
    OrderedDict with the same keys, as torchvision's ``FeaturePyramidNetwork``). Every level must be 2x
    the next one (up to rounding). ``fusion_kwargs`` go to every FreqFusion; the default compresses to
    ``out_channels // 4`` channels (``(hr + lr) // 8``) and uses the offset generator.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        **fusion_kwargs,
    ) -> None:
        super().__init__()
        if len(in_channels) < 2:
            raise ValueError(f"an FPN needs at least two levels, got in_channels={list(in_channels)}")
        kw = {"device": device, "dtype": dtype}
        out_channels = check_int(out_channels, "out_channels")
        in_channels = [check_int(c, "in_channels") for c in in_channels]
        group = fusion_kwargs.get("feature_resample_group", 4)
        if fusion_kwargs.get("feature_resample", True) and out_channels % group:
            raise ValueError(f"out_channels={out_channels} must be divisible by feature_resample_group={group} "
                             "(the offset generator resamples the fused map in groups)")
        self.in_channels, self.out_channels = in_channels, out_channels
        fusion_kwargs.setdefault("compressed_channels", max(2 * out_channels // 8, 8))
        fusion_kwargs.setdefault("feature_resample", True)
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1, **kw) for c in in_channels)
        self.fusions = nn.ModuleList(
            FreqFusion(out_channels, out_channels, **fusion_kwargs, **kw) for _ in range(len(in_channels) - 1)
        )
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1, **kw) for _ in in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (*self.lateral_convs, *self.fpn_convs):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        for fusion in self.fusions:
            fusion.reset_parameters()

    def forward(self, features: Features) -> tuple[Tensor, ...] | OrderedDict[str, Tensor]:
        keys = list(features.keys()) if isinstance(features, Mapping) else None
        maps = list(features.values()) if isinstance(features, Mapping) else list(features)
        if len(maps) != len(self.lateral_convs):
            raise ValueError(f"{type(self).__name__}: expected {len(self.lateral_convs)} feature maps, got {len(maps)}")
        for level, (x, channels) in enumerate(zip(maps, self.in_channels)):
            check_feature_map(x, channels, f"{type(self).__name__} level {level}")
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, maps)]
        for i in range(len(laterals) - 2, -1, -1):
            hr_out, lr_out = self.fusions[i](laterals[i], laterals[i + 1])
            laterals[i] = hr_out + lr_out
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        return OrderedDict(zip(keys, outs)) if keys is not None else tuple(outs)
