"""The patches :func:`register` applies to ultralytics (private): its ``parse_model`` (our rows, built as stock
rows and converted), ``BaseModel.load`` (stock conv weights into dynamic layers), ``get_flops`` (freqdyn's count)
and ``Model.train`` (refuses a converted model its YAML cannot rebuild).
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn as nn
from torch import Tensor

from ...checkpoint import load_plain_weights
from ...layers.catalog import FREQDYN_LAYERS, dynamic_layers
from ...profile import profile
from ...targets import TARGETS
from .rows import C2f_FDConv, C3k2_FDConv, DynamicConvBNAct, FreqFusionConcat

_DEFAULTS: dict[str, dict[str, Any]] = {
    **{name: target.yolo for name, target in TARGETS.items() if target.yolo_row is not None},
    "freqfusion": {"feature_resample": True},
}
_STATE: dict[str, Any] = {
    "original": None,
    "load": None,
    "get_flops": None,
    "train": None,
    "kwargs": copy.deepcopy(_DEFAULTS),
}
logger = logging.getLogger(__name__)


class _ChannelProbe(nn.Module):
    """Stand-in for a FreqFusionConcat row during parsing: upsamples, concatenates, records the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.channels: tuple[int, int] | None = None

    def forward(self, x: list[Tensor]) -> Tensor:
        lr, hr = x
        self.channels = (lr.shape[1], hr.shape[1])
        return torch.cat([nn.functional.interpolate(lr, size=hr.shape[-2:]), hr], 1)


def _fusion_from_probe(probe: nn.Module) -> nn.Module:
    """The FreqFusionConcat row for the channels a :class:`_ChannelProbe` recorded."""
    channels = cast(_ChannelProbe, probe).channels
    if channels is None:
        raise ValueError("FreqFusionConcat: the channel probe did not run")
    return FreqFusionConcat(*channels, **_STATE["kwargs"]["freqfusion"])


def _probe_channels(model: nn.Sequential, in_channels: int, last: int) -> None:
    """Run layers 0..last on a small zero image, routing inputs as ultralytics does (``m.f``)."""
    training = model.training
    model.eval()
    x: Any = torch.zeros(1, in_channels, 64, 64)
    outputs: list[Any] = []
    with torch.no_grad():
        for m in cast(list[Any], list(model))[: last + 1]:
            if m.f != -1:
                x = outputs[m.f] if isinstance(m.f, int) else [x if j == -1 else outputs[j] for j in m.f]
            x = m(x)
            outputs.append(x)
    model.train(training)


def _convert_conv(module: nn.Module, to: str) -> nn.Module:
    return DynamicConvBNAct.from_conv_block(module, to, **_STATE["kwargs"][to])


def _convert_csp(module: nn.Module, row: type[C2f_FDConv]) -> nn.Module:
    return row(module, **_STATE["kwargs"]["fdconv"])


# row name -> (stock ultralytics row it is built as, converter of the built module)
ROWS: dict[str, tuple[str, Callable[[nn.Module], nn.Module] | None]] = {
    "C2f_FDConv": ("C2f", functools.partial(_convert_csp, row=C2f_FDConv)),
    "C3k2_FDConv": ("C3k2", functools.partial(_convert_csp, row=C3k2_FDConv)),
    **{
        target.yolo_row: ("Conv", functools.partial(_convert_conv, to=name))
        for name, target in TARGETS.items()
        if target.yolo_row is not None
    },
    "FreqFusionConcat": ("Concat", None),  # needs its input channels: converted after a probing pass
}


def _gated_note(row: nn.Module) -> str:
    """' (plain: gated)' for a row whose every freqdyn conv the official gating kept plain (FDConv: <= 16 channels
    or another kernel size), so the layer table does not pass it off as dynamic.
    """
    return "" if dynamic_layers(row) else " (plain: gated)"


def _replace(built: nn.Module, convert: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """Convert a built row (one module, or the nn.Sequential of its n copies), keeping ultralytics' i/f/type/np."""
    if isinstance(built, nn.Sequential):
        new: nn.Module = nn.Sequential(*(convert(m) for m in built))
    else:
        new = convert(built)
    for attr in ("i", "f", "type"):
        setattr(new, attr, getattr(built, attr))
    new.np = sum(p.numel() for p in new.parameters())  # type: ignore[assignment]  # ultralytics' count
    return new


class _HeldRecords(logging.Filter):
    """Holds back the records of ultralytics' layer table while our rows are still stock modules."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


def _swap(line: str, start: int, old: str, new: str, right: bool = False) -> str:
    """``line`` with ``old`` (printed at ``start``) replaced by ``new``, which takes the spaces that padded ``old``
    (after it, or before it when ``right``-aligned) as far as it needs, so the other columns stay in place.
    """
    begin, end = start, start + len(old)
    while right and begin > 0 and line[begin - 1] == " " and end - begin < len(new):
        begin -= 1
    while not right and end < len(line) and line[end] == " " and end - begin < len(new):
        end += 1
    width = end - begin
    return line[:begin] + (new.rjust(width) if right else new.ljust(width)) + line[end:]


def _retitled(lines: list[str], stock: dict[int, tuple[str, int]], model: nn.Sequential) -> list[str]:
    """ultralytics' layer table with the rows it printed for stock modules (``stock[i]``: their type and parameter
    count) showing the modules those rows finally hold. The values are swapped where ultralytics printed them, row
    by row in order (the count is the number printed last before the type), without reading its column layout.
    """
    pending = sorted(stock)
    out = []
    for line in lines:
        if pending:
            kind, params = stock[pending[0]]
            start = line.find(kind)
            count = line.rfind(str(params), 0, start) if start >= 0 else -1
            if count >= 0:
                m: Any = model[pending.pop(0)]  # ultralytics sets its type and np
                line = _swap(_swap(line, start, kind, m.type), count, str(params), str(m.np), right=True)
        out.append(line)
    return out


def _parse_model(d: dict, ch, verbose: bool = True):
    rows = d["backbone"] + d["head"]
    renamed: dict[int, str] = {}
    for i, row in enumerate(rows):
        if isinstance(row[2], str) and row[2] in ROWS:
            renamed[i] = row[2]
            row[2] = ROWS[row[2]][0]
    held = _HeldRecords()
    ultralytics_logger = logging.getLogger("ultralytics")
    ultralytics_logger.addFilter(held)
    try:
        model, save = _STATE["original"](d, ch, verbose)
    finally:
        ultralytics_logger.removeFilter(held)
    stock = {i: (model[i].type, model[i].np) for i in renamed}
    probes = {}
    for i, name in renamed.items():
        convert = ROWS[name][1]
        if convert is None:
            probes[i] = _replace(model[i], lambda m: _ChannelProbe())
            model[i] = probes[i]
        else:
            model[i] = _replace(model[i], convert)
        model[i].type = name + _gated_note(model[i])
    if probes:
        _probe_channels(model, ch if isinstance(ch, int) else ch[0], max(probes))
        for i, probe in probes.items():
            model[i] = _replace(probe, _fusion_from_probe)
            model[i].type = "FreqFusionConcat"
    for line in _retitled([record.getMessage() for record in held.records], stock, model):
        ultralytics_logger.info(line)
    return model, save


def _load(self, weights, verbose: bool = True) -> None:
    """``BaseModel.load``, then the stock conv weights that it could not transfer into our dynamic layers."""
    _STATE["load"](self, weights, verbose)
    source = (weights.get("ema") or weights["model"]) if isinstance(weights, dict) else weights
    loaded = load_plain_weights(self, source.float().state_dict())
    if loaded and verbose:  # on ultralytics' own logger, right under its "Transferred a/b items" line
        logging.getLogger("ultralytics").info(
            "freqdyn: converted %d pretrained convolution(s) into dynamic layers, attention neutral, so the model "
            "computes the pretrained function (the 'Transferred' count above covers only tensors whose names and "
            "shapes match; these layers hold their kernels in other tensors)",
            len(loaded),
        )


def _get_flops(model: nn.Module, imgsz: int | tuple[int, int] | list[int] = 640) -> float:
    """ultralytics' ``get_flops`` (GFLOPs of ``model.info()``), counted by :func:`freqdyn.profile` for a model
    with freqdyn layers: thop has no rule for them, and its extrapolation from small proxy images assumes costs
    proportional to the image area, which the per-sample kernel synthesis is not.
    """
    if not any(isinstance(m, FREQDYN_LAYERS) for m in model.modules()):
        return _STATE["get_flops"](model, imgsz)
    height, width = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    channels = next(model.parameters()).shape[1]
    training = model.training
    try:
        return profile(model.eval(), (1, channels, height, width)).flops / 1e9
    except Exception:  # ultralytics' own contract: never fail model.info()
        logger.warning("freqdyn: FLOP count failed; falling back to ultralytics' counter", exc_info=True)
        return _STATE["get_flops"](model, imgsz)
    finally:
        model.train(training)


def _train(self, *args: Any, **kwargs: Any) -> Any:
    """``Model.train``, refusing a model whose freqdyn layers its YAML cannot rebuild.

    The trainer builds its model from ``model.yaml`` (and, for a loaded checkpoint, copies the weights into it), so
    ``freqdyn.convert(YOLO(...).model, ...)`` followed by ``.train()`` would silently train the stock model.
    """
    model, cfg = getattr(self, "model", None), getattr(getattr(self, "model", None), "yaml", None)
    if isinstance(model, nn.Module) and isinstance(cfg, dict) and not kwargs.get("resume"):
        ours = [name for name, m in model.named_modules() if isinstance(m, FREQDYN_LAYERS)]
        rows = [row[2] for part in ("backbone", "head") for row in cfg.get(part, []) if len(row) > 2]
        if ours and not any(row in ROWS for row in rows):
            raise ValueError(
                f"ultralytics' trainer rebuilds the model from model.yaml, which names none of freqdyn's rows, so "
                f"training would drop the {len(ours)} freqdyn layer(s) of this model (e.g. {ours[0]}). Train a YAML "
                f"with freqdyn's rows instead ({', '.join(ROWS)}; model_yaml() gives the seed's C2f_FDConv model): "
                "YOLO(yaml).train(...) in Python, or 'freqdyn yolo ... model=<yaml>' from the shell."
            )
    return _STATE["train"](self, *args, **kwargs)


def register(**kwargs: dict[str, Any]) -> None:
    """Make the :data:`ROWS` names usable in YAMLs (idempotent). ``register(fdconv={"kernel_num": 64})`` sets
    the keyword arguments of a target for every row built afterwards.
    """
    from ultralytics.engine.model import Model
    from ultralytics.nn import tasks
    from ultralytics.utils import torch_utils

    for target, options in kwargs.items():
        if target not in _DEFAULTS:
            raise ValueError(f"unknown target {target!r}; choose from {sorted(_DEFAULTS)}")
        _STATE["kwargs"][target] = {**_DEFAULTS[target], **options}
    if _STATE["original"] is None:
        _STATE["original"] = tasks.parse_model
        tasks.parse_model = _parse_model
        _STATE["load"] = tasks.BaseModel.load
        tasks.BaseModel.load = _load  # type: ignore[method-assign]  # the documented patch of register()
        _STATE["get_flops"] = torch_utils.get_flops
        torch_utils.get_flops = _get_flops
        _STATE["train"] = Model.train
        Model.train = _train  # type: ignore[method-assign]  # refuses to drop a convert()ed model's layers


def unregister() -> None:
    """Restore ultralytics' own ``parse_model`` and the default options."""
    from ultralytics.engine.model import Model
    from ultralytics.nn import tasks
    from ultralytics.utils import torch_utils

    if _STATE["original"] is not None:
        tasks.parse_model = _STATE["original"]
        tasks.BaseModel.load = _STATE["load"]  # type: ignore[method-assign]
        _STATE["original"] = _STATE["load"] = None
        torch_utils.get_flops = _STATE["get_flops"]
        _STATE["get_flops"] = None
        Model.train = _STATE["train"]  # type: ignore[method-assign]
        _STATE["train"] = None
    _STATE["kwargs"] = copy.deepcopy(_DEFAULTS)
