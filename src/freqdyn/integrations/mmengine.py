"""Register freqdyn layers in mmengine's MODELS registry, so mmdet / mmseg configs can name them.

    custom_imports = dict(imports=["freqdyn.integrations.mmengine"], allow_failed_imports=False)
    ... conv_cfg=dict(type="FDConv", kernel_num=64) ...
    ... backbone=dict(type="UniConvNet", arch="t", out_indices=(0, 1, 2, 3)) ...
    ... backbone=dict(type="KWResNet", depth=50, cell_num_ratio=4) ...   (KernelWarehouse, needs torchvision)

Importing this module registers the layers (idempotently) in the root registry, which the mmdet / mmseg
child registries fall back to. It also shortens mmengine's warning when a plain checkpoint (``load_from``,
``init_cfg=dict(type="Pretrained")``) loads into a model with dynamic layers: their attention parameters, which
the checkpoint cannot hold and which start neutral, are summarised in one ``freqdyn:`` line instead of being
listed among the missing keys (thousands of names in a ResNet); other missing keys are still listed; a strict
load still fails. mmcv's ``build_conv_layer(cfg, in, out, kernel_size, stride=, padding=, dilation=, groups=,
bias=)`` matches the ``nn.Conv2d``-compatible signatures; every conv defines
``init_weights`` so ``ConvModule`` keeps its initialisation instead of re-running kaiming. ``type="FDConv"``
builds through :func:`freqdyn.gated_fdconv`, as the authors' configs expect: layers their gating keeps plain are
``nn.Conv2d`` (``use_fdconv_if_c_gt=0`` makes every 1x1 / 3x3 conv an FDConv).

Weights-only loading (torch >= 2.6 loads with ``weights_only=True`` by default): an mmengine checkpoint holds
mmengine's ``HistoryBuffer`` (the message hub's logs) and numpy arrays and scalars, so ``resume=True``,
``load_from`` and mmdet's ``init_detector`` fail on it. Importing this module allow-lists those data classes
(:data:`SAFE_GLOBALS`, ``torch.serialization.add_safe_globals``), and lets mmengine's own checkpoint loads
(``CheckpointLoader.load_checkpoint``, which all three call) also take ``getattr``: a ``HistoryBuffer`` pickles its
statistics methods as ``getattr(HistoryBuffer, 'mean')``. ``getattr`` stays refused in every other ``torch.load``.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.runner import checkpoint

from ..convert import convert
from ..layers import DynamicConv2d, gated_fdconv
from ..layers.catalog import FREQDYN_LAYERS, attention_keys
from ..models import UniConvNet, scale_args


class UniConvNetBackbone(UniConvNet, BaseModule):
    """:class:`~freqdyn.models.UniConvNet` as an mmdet / mmseg backbone (registered as ``UniConvNet``):
    ``backbone=dict(type="UniConvNet", arch="t", out_indices=(0, 1, 2, 3), drop_path_rate=0.2,
    init_cfg=dict(type="Pretrained", checkpoint="uniconvnet_t_1k_224_ema.pth"))`` returns the stage outputs
    (B, dims[i], H / 2^(i+2), W / 2^(i+2)); no classifier. The authors' checkpoints load by ``init_cfg`` (their
    keys are ours; the head's are reported unused).
    """

    def __init__(
        self, arch: str = "t", out_indices: Sequence[int] = (0, 1, 2, 3), init_cfg: dict | None = None, **kwargs
    ) -> None:
        super().__init__(**{**scale_args(arch, "arch"), "num_classes": 0, **kwargs}, out_indices=out_indices)
        self.init_cfg = copy.deepcopy(init_cfg)


class KWResNetBackbone(BaseModule):
    """A torchvision ResNet (``depth`` 18, 34, 50, 101 or 152) converted to KernelWarehouse as the authors' KW ResNets
    are (:func:`freqdyn.convert` with ``"kw"``), as an mmdet / mmseg backbone (registered as ``KWResNet``):
    ``backbone=dict(type="KWResNet", depth=50, cell_num_ratio=4, out_indices=(0, 1, 2, 3))`` returns the stage
    outputs (B, C_i, H / 2^(i+2), W / 2^(i+2)); no classifier. Keys are the authors' (``warehouse_manager.weights.{i}``,
    ``layer2.0.conv2.attention.fc1.weight`` ...): their ImageNet checkpoints load by ``init_cfg=dict(type="Pretrained",
    checkpoint=...)`` (the classifier's keys reported unused). Needs torchvision. Other keywords go to
    :class:`~freqdyn.layers.kernel_warehouse.WarehouseManager`.
    """

    def __init__(
        self, depth: int = 50, out_indices: Sequence[int] = (0, 1, 2, 3), init_cfg: dict | None = None, **options: Any
    ) -> None:
        super().__init__(init_cfg=copy.deepcopy(init_cfg))
        try:
            import torchvision
        except ImportError as err:
            raise ImportError("KWResNet builds torchvision's ResNet: pip install 'freqdyn[vision]'") from err
        if depth not in (18, 34, 50, 101, 152):
            raise ValueError(f"depth must be one of 18, 34, 50, 101, 152, got {depth!r}")
        if not out_indices or any(i not in range(4) for i in out_indices):
            raise ValueError(f"out_indices must name stages 0..3, got {out_indices!r}")
        net = getattr(torchvision.models, f"resnet{depth}")()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_indices = tuple(out_indices)
        convert(self, "kw", **options)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


LAYERS: dict[str, Callable[..., nn.Module]] = {
    **{layer.__name__: layer for layer in FREQDYN_LAYERS},
    "FDConv": gated_fdconv,  # the authors' FDConv: plain nn.Conv2d where their gating says so (their keys)
    "DyConv": DynamicConv2d,
    "UniConvNet": UniConvNetBackbone,
    "KWResNet": KWResNetBackbone,
}


_MISSING = "missing keys in source state_dict: "


def summarise_missing(message: str, attention: dict[str, str]) -> str:
    """mmengine's mismatch warning with the dynamic layers' attention keys taken out of the missing-keys line and
    summarised in one line.
    """
    lines = message.split("\n")
    for i, line in enumerate(lines):
        if not line.startswith(_MISSING):
            continue
        keys = line[len(_MISSING) :].split(", ")
        ours = [k for k in keys if k in attention]
        if not ours:
            return message
        rest = [k for k in keys if k not in attention]
        layers = {attention[k] for k in ours}
        note = (
            f"freqdyn: {len(ours)} attention parameter(s) of {len(layers)} dynamic layer(s) are not in the "
            f"checkpoint (e.g. {ours[0]}); they start neutral, so those layers compute the checkpoint's "
            "convolutions, whose kernels they took from its 'weight' keys"
        )
        lines[i : i + 1] = ([_MISSING + ", ".join(rest)] if rest else []) + [note]
        return "\n".join(lines)
    return message


def _load_state_dict(
    original: Any, module: nn.Module, state_dict: Any, strict: bool = False, logger: Any = None
) -> Any:
    """mmengine's ``load_state_dict``, its mismatch warning passed through :func:`summarise_missing`."""
    attention = attention_keys(module)
    printer = checkpoint.print_log

    def print_log(msg: Any, logger: Any = None, level: int = logging.INFO) -> None:
        printer(summarise_missing(msg, attention) if isinstance(msg, str) else msg, logger=logger, level=level)

    checkpoint.print_log = print_log
    try:
        return original(module, state_dict, strict, logger)
    finally:
        checkpoint.print_log = printer


def _safe_globals() -> list[Any]:
    """The data classes of an mmengine checkpoint: ``HistoryBuffer`` and numpy's arrays, scalars and dtypes (the
    functions numpy pickles them with, found from numpy itself so that numpy 1 and 2 both work).
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer

    dtypes = [getattr(np.dtypes, name) for name in np.dtypes.__all__]
    return [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        np.ndarray((0,)).__reduce__()[0],
        np.float64(0).__reduce__()[0],
        *dtypes,
    ]


SAFE_GLOBALS = _safe_globals()


def _load_with_getattr(
    original: Callable[..., Any], filename: str, map_location: Any = None, logger: Any = "current"
) -> Any:
    """mmengine's ``CheckpointLoader.load_checkpoint`` with ``getattr`` allowed (HistoryBuffer's methods)."""
    with torch.serialization.safe_globals([getattr]):
        return original(filename, map_location, logger)


def register() -> list[str]:
    """Register :data:`LAYERS` in ``mmengine.registry.MODELS``; returns the names added by this call."""
    from mmengine.registry import MODELS

    added = []
    for name, cls in LAYERS.items():
        if name not in MODELS.module_dict:
            MODELS.register_module(name=name, module=cls)
            added.append(name)
    if not isinstance(checkpoint.load_state_dict, functools.partial):  # once: what load_checkpoint calls
        checkpoint.load_state_dict = functools.partial(_load_state_dict, checkpoint.load_state_dict)
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
    loader = checkpoint.CheckpointLoader
    if not isinstance(loader.__dict__["load_checkpoint"], staticmethod):  # once: resume, load_from, init_detector
        loader.load_checkpoint = staticmethod(functools.partial(_load_with_getattr, loader.load_checkpoint))
    return added


register()
