"""Use freqdyn blocks by name in ultralytics YOLO model YAMLs, without editing ultralytics.

    from freqdyn.integrations import ultralytics as fu
    fu.register()                                   # once per process that parses YAMLs
    model = YOLO(fu.model_yaml("n"))                # the seed's yolov8-pose with C2f_FDConv

Row names added: ``C2f_FDConv`` (a C2f whose bottleneck 3x3 convs are FDConv), ``FDConv``, ``DynamicConv``,
``CondConv`` and ``ODConv`` (drop-ins for ``Conv``: the dynamic conv + BN + activation). Ultralytics has
no plug-in hook and injects channel counts only for its own classes, so :func:`register` wraps
``ultralytics.nn.tasks.parse_model``: such rows are built as the stock ``C2f`` / ``Conv`` (so width /
depth scaling and channel bookkeeping are ultralytics' own) and then converted. Our blocks are not
``Conv`` subclasses, so ``model.fuse()`` leaves them alone (it would fold BN into a weight that FDConv
does not have). Saved checkpoints pickle these classes: ``freqdyn`` must be importable to load them.
Note that ultralytics applies weight decay to every non-norm, non-bias parameter (``dft_weight`` included)
and, with ``optimizer='auto'`` on long runs, MuSGD to 2-D / 4-D parameters; pass ``optimizer='SGD'`` or
``'AdamW'`` to keep the spectral weights out of Muon.
"""
from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from torch import Tensor

from ..convert import CONVERTERS

_DEFAULTS: dict[str, dict[str, Any]] = {
    "fdconv": {"kernel_num": 16},  # the YOLO re-implementations' setting (the paper's 64 is for ResNet-50)
    "dyconv": {"num_experts": 4},
    "condconv": {"num_experts": 8},
    "odconv": {"num_experts": 4},
}
_STATE: dict[str, Any] = {"original": None, "kwargs": copy.deepcopy(_DEFAULTS)}


class DynamicConvBNAct(nn.Module):
    """A freqdyn conv + BatchNorm + activation: ultralytics' ``Conv`` contract (c1 -> c2, autopad), not its class."""

    def __init__(self, conv: nn.Module, bn: nn.BatchNorm2d, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    @classmethod
    def from_conv_block(cls, block: nn.Module, to: str, **kwargs) -> "DynamicConvBNAct":
        """Convert an ultralytics ``Conv`` (conv, bn, act), keeping its weights: equal output at neutral attention."""
        return cls(CONVERTERS[to](block.conv, **kwargs), block.bn, block.act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class C2f_FDConv(nn.Module):  # noqa: N801 - the name YAMLs use
    """Ultralytics ``C2f`` whose bottleneck 3x3 convs (``m[i].cv2``) are FDConv + BN + act; same forward."""

    def __init__(self, c2f: nn.Module, **fdconv_kwargs) -> None:
        super().__init__()
        self.c = c2f.c
        self.cv1, self.cv2, self.m = c2f.cv1, c2f.cv2, c2f.m
        for bottleneck in self.m:
            bottleneck.cv2 = DynamicConvBNAct.from_conv_block(bottleneck.cv2, "fdconv", **fdconv_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


def _convert_conv(module: nn.Module, to: str) -> nn.Module:
    return DynamicConvBNAct.from_conv_block(module, to, **_STATE["kwargs"][to])


def _convert_c2f(module: nn.Module) -> nn.Module:
    return C2f_FDConv(module, **_STATE["kwargs"]["fdconv"])


# row name -> (stock ultralytics row it is built as, converter of the built module)
ROWS: dict[str, tuple[str, Callable[[nn.Module], nn.Module]]] = {
    "C2f_FDConv": ("C2f", _convert_c2f),
    "FDConv": ("Conv", functools.partial(_convert_conv, to="fdconv")),
    "DynamicConv": ("Conv", functools.partial(_convert_conv, to="dyconv")),
    "CondConv": ("Conv", functools.partial(_convert_conv, to="condconv")),
    "ODConv": ("Conv", functools.partial(_convert_conv, to="odconv")),
}


def _replace(built: nn.Module, convert: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """Convert a built row (one module, or the nn.Sequential of its n copies), keeping ultralytics' i/f/type/np."""
    if isinstance(built, nn.Sequential):
        new: nn.Module = nn.Sequential(*(convert(m) for m in built))
    else:
        new = convert(built)
    for attr in ("i", "f", "type"):
        setattr(new, attr, getattr(built, attr))
    new.np = sum(p.numel() for p in new.parameters())
    return new


def _parse_model(d: dict, ch, verbose: bool = True):
    rows = d["backbone"] + d["head"]
    renamed: dict[int, str] = {}
    for i, row in enumerate(rows):
        if isinstance(row[2], str) and row[2] in ROWS:
            renamed[i] = row[2]
            row[2] = ROWS[row[2]][0]
    model, save = _STATE["original"](d, ch, verbose)
    for i, name in renamed.items():
        model[i] = _replace(model[i], ROWS[name][1])
        model[i].type = name
    return model, save


def register(**kwargs: dict[str, Any]) -> None:
    """Make the :data:`ROWS` names usable in YAMLs (idempotent). ``register(fdconv={"kernel_num": 64})`` sets
    the keyword arguments of a target for every row built afterwards."""
    from ultralytics.nn import tasks

    for target, options in kwargs.items():
        if target not in _DEFAULTS:
            raise ValueError(f"unknown target {target!r}; choose from {sorted(_DEFAULTS)}")
        _STATE["kwargs"][target] = {**_DEFAULTS[target], **options}
    if _STATE["original"] is None:
        _STATE["original"] = tasks.parse_model
        tasks.parse_model = _parse_model


def unregister() -> None:
    """Restore ultralytics' own ``parse_model`` and the default options."""
    from ultralytics.nn import tasks

    if _STATE["original"] is not None:
        tasks.parse_model = _STATE["original"]
        _STATE["original"] = None
    _STATE["kwargs"] = copy.deepcopy(_DEFAULTS)


def model_yaml(scale: str = "n") -> str:
    """Path that makes ultralytics load the packaged yolov8-pose-C2f_FDConv.yaml at ``scale`` (n, s, m, l, x)."""
    if scale not in "nsmlx" or len(scale) != 1:
        raise ValueError(f"scale must be one of n, s, m, l, x, got {scale!r}")
    path = Path(str(resources.files("freqdyn.integrations") / "cfg" / "yolov8-pose-C2f_FDConv.yaml"))
    return str(path.with_name(f"yolov8{scale}-pose-C2f_FDConv.yaml"))
