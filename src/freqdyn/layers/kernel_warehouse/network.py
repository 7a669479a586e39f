"""A network turned into KernelWarehouse: its convolutions grouped into stages (one warehouse each), reserved from
one :class:`~.manager.WarehouseManager` that the network holds as ``warehouse_manager`` (the authors' names).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch.nn as nn

from .manager import LAYER_TYPES, WarehouseManager

logger = logging.getLogger(__name__)

StageMap = Mapping[str, str] | Callable[[str, nn.Module], str | None]
_LAYER_TYPES = {plain: layer_type for layer_type, (_, plain) in LAYER_TYPES.items()}  # plain layer -> its type
_RESNET_CONV = re.compile(r"(?:^|\.)layer(\d+)\.(\d+)\.(?:conv(\d)|(downsample)\.0)$")


def resnet_stages(model: nn.Module) -> dict[str, str]:
    """The authors' KW ResNet layout for a torchvision or timm ResNet (also inside a detector's backbone): conv name
    -> warehouse ``"stage{s}_layer_conv"``, for the convs their ``kw_resnet18`` / ``kw_resnet50`` make dynamic.

    Stage s holds ``layer{s+1}``'s convs, except that each stage's first block hands its first conv and its
    strided shortcut to the previous stage's warehouse; the stride-1 shortcut of ``layer1`` and, in bottleneck
    networks, the first 1x1 conv of ``layer1`` (no previous stage) stay plain, as do the stem and the classifier.
    """
    names = {name for name, _ in model.named_modules()}
    stages = {}
    for name, module in model.named_modules():
        match = _RESNET_CONV.search(name)
        if match is None or type(module) is not nn.Conv2d:
            continue
        stage, block = int(match[1]) - 1, int(match[2])
        if match[4]:  # the shortcut of a block's first layer: enabled where it is strided
            if module.stride != (1, 1):
                stages[name] = f"stage{stage - 1}_layer_conv"
            continue
        index = int(match[3])
        if index == 1:
            owner = stage - 1 if block == 0 else stage
            bottleneck = name[: -len("conv1")] + "conv3" in names
            if bottleneck and owner < 0:
                continue
            stages[name] = f"stage{max(owner, 0)}_layer_conv"
        else:
            stages[name] = f"stage{stage}_layer_conv"
    return stages


def _warehouse_of(stages: StageMap, name: str, module: nn.Module) -> str | None:
    return stages.get(name) if isinstance(stages, Mapping) else stages(name, module)


def _unsupported(module: nn.Module) -> str | None:
    if isinstance(module, nn.Linear):
        return None
    conv: Any = module
    if conv.padding_mode != "zeros":
        return f"padding_mode {conv.padding_mode!r} (KernelWarehouse pads with zeros)"
    if isinstance(conv.padding, str):
        return f"padding {conv.padding!r} (KernelWarehouse takes explicit padding)"
    return None


def to_kernel_warehouse(
    model: nn.Module,
    stages: StageMap | None = None,
    keep: Callable[[str, nn.Module], str | None] | None = None,
    **options: Any,
) -> tuple[list[str], dict[str, str]]:
    """Replace ``model``'s staged convolutions (and linear layers) by KW layers in place and attach their
    ``WarehouseManager(**options)`` as ``model.warehouse_manager``; returns the replaced names and the skipped ones
    with the reason.

    ``stages`` maps a layer's qualified name to its warehouse (a dict, or a function of (name, module) returning
    ``None`` for a plain layer); by default :func:`resnet_stages`. ``keep(name, module)`` may return a reason to
    leave a staged layer plain. The KW layers are initialised as the authors' networks are: the cells are shared,
    so no pretrained plain weight carries over (train, or load a KW checkpoint).
    """
    if isinstance(model, tuple(_LAYER_TYPES)):
        raise ValueError("KernelWarehouse converts a network (its warehouses are shared by its layers), not one layer")
    if hasattr(model, "warehouse_manager"):
        raise ValueError("the model already has a warehouse_manager: it was converted to KernelWarehouse before")
    stages = resnet_stages(model) if stages is None else stages
    manager = WarehouseManager(**options)
    replaced: list[str] = []
    skipped: dict[str, str] = {}
    source = None
    for name, module in list(model.named_modules()):
        if type(module) not in _LAYER_TYPES:
            continue
        warehouse = _warehouse_of(stages, name, module)
        if warehouse is None:
            continue
        reason = _unsupported(module) or (keep(name, module) if keep is not None else None)
        if reason:
            skipped[name] = reason
            continue
        layer_type = _LAYER_TYPES[type(module)]
        weight = module.weight
        conv: Any = module
        if layer_type == "linear":
            new = manager.reserve(
                conv.in_features,
                conv.out_features,
                bias=conv.bias is not None,
                warehouse_name=warehouse,
                layer_type=layer_type,
                device=weight.device,
                dtype=weight.dtype,
            )
        else:
            new = manager.reserve(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,
                conv.groups,
                conv.bias is not None,
                warehouse_name=warehouse,
                layer_type=layer_type,
                device=weight.device,
                dtype=weight.dtype,
            )
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, new.train(module.training))
        replaced.append(name)
        source = weight if source is None else source
    if source is None:
        raise ValueError(
            "no layer of the model is in a KernelWarehouse stage: pass stages= (name -> warehouse) for "
            "a model that is not a torchvision or timm ResNet"
        )
    manager.store(device=source.device, dtype=source.dtype)
    model.warehouse_manager = manager
    manager.allocate(model)
    logger.warning(
        "KernelWarehouse: %d layers now share %d warehouses; their cells are initialised as the authors' "
        "networks are (shared cells cannot start from pretrained plain weights)",
        len(replaced),
        len(manager.weights),
    )
    return replaced, skipped
