"""Register freqdyn layers in mmengine's MODELS registry, so mmdet / mmseg configs can name them.

    custom_imports = dict(imports=["freqdyn.integrations.mmengine"], allow_failed_imports=False)
    ... conv_cfg=dict(type="FDConv", kernel_num=64) ...
    ... backbone=dict(type="UniConvNet", arch="t", out_indices=(0, 1, 2, 3)) ...

Importing this module registers the layers (idempotently) in the root registry, which the mmdet / mmseg
child registries fall back to. mmcv's ``build_conv_layer(cfg, in, out, kernel_size, stride=, padding=,
dilation=, groups=, bias=)`` matches the ``nn.Conv2d``-compatible signatures; every conv defines
``init_weights`` so ``ConvModule`` keeps its initialisation instead of re-running kaiming.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch.nn as nn
from mmengine.model import BaseModule

from ..kinds import KINDS
from ..layers import MRFA, DynamicConv2d, FreqFusion, FreqFusionFPN, UniConvNetBlock
from ..models import SCALES, UniConvNet


class UniConvNetBackbone(UniConvNet, BaseModule):
    """:class:`~freqdyn.models.UniConvNet` as an mmdet / mmseg backbone (registered as ``UniConvNet``):
    ``backbone=dict(type="UniConvNet", arch="t", out_indices=(0, 1, 2, 3), drop_path_rate=0.2,
    init_cfg=dict(type="Pretrained", checkpoint="uniconvnet_t_1k_224_ema.pth"))`` returns the stage outputs
    (B, dims[i], H / 2^(i+2), W / 2^(i+2)); no classifier. The authors' checkpoints load by ``init_cfg`` (their
    keys are ours; the head's are reported unused)."""

    def __init__(self, arch: str = "t", out_indices: Sequence[int] = (0, 1, 2, 3), init_cfg: dict | None = None,
                 **kwargs) -> None:
        if arch not in SCALES:
            raise ValueError(f"arch must be one of {', '.join(SCALES)}, got {arch!r}")
        depths, dims, group_channels = SCALES[arch]
        kwargs.setdefault("group_channels", group_channels)
        kwargs.setdefault("num_classes", 0)
        super().__init__(depths, dims, out_indices=out_indices, **kwargs)
        self.init_cfg = copy.deepcopy(init_cfg)

LAYERS: dict[str, type[nn.Module]] = {
    **{kind.layer.__name__: kind.layer for kind in KINDS.values()},
    "DyConv": DynamicConv2d,
    "FreqFusion": FreqFusion,
    "FreqFusionFPN": FreqFusionFPN,
    "MRFA": MRFA,
    "UniConvNetBlock": UniConvNetBlock,
    "UniConvNet": UniConvNetBackbone,
}


def register() -> list[str]:
    """Register :data:`LAYERS` in ``mmengine.registry.MODELS``; returns the names added by this call."""
    from mmengine.registry import MODELS

    added = []
    for name, cls in LAYERS.items():
        if name not in MODELS.module_dict:
            MODELS.register_module(name=name, module=cls)
            added.append(name)
    return added


register()
