"""Register freqdyn layers in mmengine's MODELS registry, so mmdet / mmseg configs can name them.

    custom_imports = dict(imports=["freqdyn.integrations.mmengine"], allow_failed_imports=False)
    ... conv_cfg=dict(type="FDConv", kernel_num=64) ...

Importing this module registers the layers (idempotently) in the root registry, which the mmdet / mmseg
child registries fall back to. mmcv's ``build_conv_layer(cfg, in, out, kernel_size, stride=, padding=,
dilation=, groups=, bias=)`` matches the ``nn.Conv2d``-compatible signatures; every conv defines
``init_weights`` so ``ConvModule`` keeps its initialisation instead of re-running kaiming.
"""
from __future__ import annotations

import torch.nn as nn

from ..kinds import KINDS
from ..layers import MRFA, DynamicConv2d, FreqFusion, FreqFusionFPN, UniConvNetBlock

LAYERS: dict[str, type[nn.Module]] = {
    **{kind.layer.__name__: kind.layer for kind in KINDS.values()},
    "DyConv": DynamicConv2d,
    "FreqFusion": FreqFusion,
    "FreqFusionFPN": FreqFusionFPN,
    "MRFA": MRFA,
    "UniConvNetBlock": UniConvNetBlock,
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
