"""FreqFusionFPN: a feature-pyramid neck whose top-down upsampling is FreqFusion (TPAMI 2024)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._common.checks import ArgumentTypeError, check_feature_map, check_int, check_ints
from .._common.device_dtype import factory_kwargs
from .._common.trace_only import TraceOnly
from .fusion import FreqFusion

Features = Sequence[Tensor] | Mapping[str, Tensor]
MAX_EXTRA_LEVELS = 16  # stride-2 levels above the inputs: a 65536-pixel side is 1x1 after 16 (num_outs' bound)


class FreqFusionFPN(TraceOnly, nn.Module):
    """Drop-in FPN: pyramid features, highest resolution first -> maps with ``out_channels``, one per level.

    lateral 1x1 convs -> top-down fusion ``p_i = hr_out + lr_out`` of ``FreqFusion(p_i, p_{i+1})`` -> 3x3
    output convs. Accepts a list / tuple (returns a tuple, as mmdet's FPN) or a dict (returns an
    OrderedDict with the same keys, as torchvision's ``FeaturePyramidNetwork``). Every level must be 2x
    the next one (up to rounding). ``fusion_kwargs`` go to every FreqFusion; the default compresses to
    ``out_channels // 4`` channels (``(hr + lr) // 8``) and uses the offset generator.

    Extra levels, as the host libraries build them:

    * torchvision: ``extra_blocks`` (e.g. ``torchvision.ops.feature_pyramid_network.LastLevelMaxPool()``,
      the 'pool' level that Faster R-CNN's five anchor sizes need) is called as torchvision's FPN calls it.
    * mmdet: ``start_level`` / ``end_level`` (inclusive, -1 = last) select the inputs used, and ``num_outs``
      levels are returned: extra levels come from stride-2 max pooling of the last output, or with
      ``add_extra_convs`` (True = ``'on_input'``, ``'on_lateral'``, ``'on_output'``) from stride-2 3x3 convs
      on that source and then on each previous extra level (ReLU first with ``relu_before_extra_convs``).
      ``init_cfg`` is accepted for mmengine configs (this is a plain ``nn.Module``; its own init applies).

    Args:
        in_channels: channels of each input level, highest resolution first.
        out_channels: channels of every output level.
        num_outs, start_level, end_level, add_extra_convs, relu_before_extra_convs: mmdet's FPN options (above);
            at most :data:`MAX_EXTRA_LEVELS` (16) outputs beyond the levels used.
        extra_blocks: torchvision's extra-level block (above).
        init_cfg: accepted for mmengine configs, unused.
        device, dtype: factory arguments.
        **fusion_kwargs: options of every :class:`FreqFusion`.

    Shape:
        - Input: a list, tuple or dict of maps (B, in_channels[i], H_i, W_i), each level twice the next.
        - Output: a tuple (or an OrderedDict with the input's keys) of ``num_outs`` maps (B, out_channels, H_i, W_i).

    Examples:
        >>> fpn = FreqFusionFPN([16, 32], 16)
        >>> [p.shape for p in fpn([torch.randn(1, 16, 32, 32), torch.randn(1, 32, 16, 16)])]
        [torch.Size([1, 16, 32, 32]), torch.Size([1, 16, 16, 16])]
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        num_outs: int | None = None,
        start_level: int = 0,
        end_level: int = -1,
        add_extra_convs: bool | str = False,
        relu_before_extra_convs: bool = False,
        extra_blocks: nn.Module | None = None,
        init_cfg: object = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        **fusion_kwargs,
    ) -> None:
        super().__init__()
        kw = factory_kwargs(device, dtype)
        out_channels = check_int(out_channels, "out_channels")
        in_channels = list(check_ints(in_channels, "in_channels"))
        end_level = check_int(end_level, "end_level", -1)
        end = len(in_channels) if end_level in (-1, len(in_channels) - 1) else end_level + 1
        start_level = check_int(start_level, "start_level", 0)
        if not start_level < end <= len(in_channels) or end - start_level < 2:
            raise ValueError(
                f"an FPN needs at least two levels: in_channels={list(in_channels)}, "
                f"start_level={start_level}, end_level={end_level}"
            )
        used = end - start_level
        num_outs = used if num_outs is None else check_int(num_outs, "num_outs")
        if num_outs < used:
            raise ValueError(f"num_outs={num_outs} is fewer than the {used} levels used")
        if num_outs - used > MAX_EXTRA_LEVELS:
            raise ValueError(
                f"num_outs={num_outs} asks for {num_outs - used} extra levels beyond the {used} used; "
                f"each halves the last map, so after {MAX_EXTRA_LEVELS} even a "
                f"{2**MAX_EXTRA_LEVELS}-pixel map is 1x1: num_outs must be at most "
                f"{used + MAX_EXTRA_LEVELS}"
            )
        if add_extra_convs is True:
            add_extra_convs = "on_input"
        if add_extra_convs not in (False, "on_input", "on_lateral", "on_output"):
            raise ValueError(
                f"add_extra_convs must be a bool or 'on_input' / 'on_lateral' / 'on_output', got {add_extra_convs!r}"
            )
        group = fusion_kwargs.get("feature_resample_group", 4)
        if fusion_kwargs.get("feature_resample", True) and out_channels % group:
            raise ValueError(
                f"out_channels={out_channels} must be divisible by feature_resample_group={group} "
                "(the offset generator resamples the fused map in groups)"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.start_level, self.end, self.num_outs = start_level, end, num_outs
        self.add_extra_convs, self.relu_before_extra_convs = add_extra_convs, relu_before_extra_convs
        self.extra_blocks, self.init_cfg = extra_blocks, init_cfg
        fusion_kwargs.setdefault("compressed_channels", max(2 * out_channels // 8, 8))
        fusion_kwargs.setdefault("feature_resample", True)
        levels = in_channels[start_level:end]
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1, **kw) for c in levels)
        self.fusions = nn.ModuleList(
            FreqFusion(out_channels, out_channels, **fusion_kwargs, **kw) for _ in range(used - 1)
        )
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1, **kw) for _ in levels)
        extra = num_outs - used if add_extra_convs else 0
        first = in_channels[end - 1] if add_extra_convs == "on_input" else out_channels
        self.extra_convs = nn.ModuleList(
            nn.Conv2d(first if i == 0 else out_channels, out_channels, 3, stride=2, padding=1, **kw)
            for i in range(extra)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (*self.lateral_convs, *self.fpn_convs, *self.extra_convs):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        for fusion in cast(list[FreqFusion], list(self.fusions)):
            fusion.reset_parameters()

    init_weights = reset_parameters

    def forward(self, features: Features) -> tuple[Tensor, ...] | OrderedDict[str, Tensor]:
        """Features (B, in_channels[i], H_i, W_i) -> ``num_outs`` maps (B, out_channels, ., .), plus extra blocks'."""
        if not isinstance(features, Mapping | list | tuple):
            raise ArgumentTypeError(
                f"{type(self).__name__} takes a list / tuple or a dict of feature maps (one per "
                f"level), got {type(features).__name__}"
            )
        keys = list(features.keys()) if isinstance(features, Mapping) else None
        maps = list(features.values()) if isinstance(features, Mapping) else list(features)
        if len(maps) != len(self.in_channels):
            raise ValueError(f"{type(self).__name__}: expected {len(self.in_channels)} feature maps, got {len(maps)}")
        for level, (x, channels) in enumerate(zip(maps, self.in_channels, strict=True)):
            check_feature_map(x, channels, f"{type(self).__name__} level {level}")
        inputs = maps[self.start_level : self.end]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs, strict=True)]
        for i in range(len(laterals) - 2, -1, -1):
            hr_out, lr_out = self.fusions[i](laterals[i], laterals[i + 1])
            laterals[i] = hr_out + lr_out
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals, strict=True)]
        if not self.add_extra_convs:
            while len(outs) < self.num_outs:
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        else:
            source = {"on_input": inputs[-1], "on_lateral": laterals[-1], "on_output": outs[-1]}[self.add_extra_convs]
            for i, conv in enumerate(self.extra_convs):
                x = source if i == 0 else outs[-1]
                outs.append(conv(F.relu(x) if self.relu_before_extra_convs and i > 0 else x))
        names = (
            [str(i) for i in range(len(outs))]
            if keys is None
            else (keys[self.start_level : self.end] + [f"extra{i}" for i in range(len(outs) - len(inputs))])
        )
        if self.extra_blocks is not None:  # torchvision's ExtraFPNBlock contract
            outs, names = self.extra_blocks(outs, inputs, names)
        return OrderedDict(zip(names, outs, strict=True)) if keys is not None else tuple(outs)
