"""Use freqdyn blocks by name in ultralytics YOLO model YAMLs, without editing ultralytics.

    from freqdyn.integrations import ultralytics as fu
    fu.register()                                   # once per process that parses YAMLs
    model = YOLO(fu.model_yaml("n"))                # the seed's yolov8-pose with C2f_FDConv

Row names added: ``C2f_FDConv`` (a C2f whose bottleneck 3x3 convs are FDConv), ``C3k2_FDConv`` (YOLO11's C3k2,
likewise), ``FDConv``, ``DynamicConv``,
``CondConv`` and ``ODConv`` (drop-ins for ``Conv``: the dynamic conv + BN + activation), and
``FreqFusionConcat`` (replaces an ``nn.Upsample`` row and the ``Concat`` after it: ``[[-1, 6], 1,
FreqFusionConcat, [1]]`` fuses the lr map -1 into the hr map 6 with FreqFusion). Ultralytics has
no plug-in hook and injects channel counts only for its own classes, so :func:`register` wraps
``ultralytics.nn.tasks.parse_model``: such rows are built as the stock ``C2f`` / ``Conv`` (so width /
depth scaling and channel bookkeeping are ultralytics' own) and then converted. Our blocks are not
``Conv`` subclasses, so ``model.fuse()`` leaves them alone (it would fold BN into a weight that FDConv
does not have). Saved checkpoints pickle these classes: ``freqdyn`` must be importable to load them.
Pretrained stock weights load into such a model (``YOLO(model_yaml("s")).load("yolov8s-pose.pt")``, or
``pretrained=`` when training): :func:`register` also extends ``BaseModel.load`` so that every dynamic
layer takes the stock conv weight it replaces by conversion (attention neutral), where ultralytics' own
shape-matching transfer would drop it. It also makes ``model.info()`` tell the truth: the layer table shows
our rows with their own names and parameter counts, and the GFLOPs are counted by :func:`freqdyn.profile`
(thop sees no arithmetic in our layers). From the shell, ``freqdyn yolo ...`` is ultralytics' ``yolo`` CLI
with :func:`register` applied (train, resume, val, predict, export). ``model.export(format="onnx")`` (the
TorchScript-based exporter) works: while tracing, our layers use no FFT operators. Importing this module
registers (so does unpickling a checkpoint with our rows, which imports it): resuming with ultralytics' own
``yolo ... resume`` / ``train(resume=True)`` needs no :func:`register` call, and ultralytics' DDP workers,
which load the built model from a cloudpickled trainer state, register the same way.
Note that ultralytics applies weight decay to every non-norm, non-bias parameter (``dft_weight`` included)
and, with ``optimizer='auto'`` on long runs, MuSGD to 2-D / 4-D parameters; pass ``optimizer='SGD'`` or
``'AdamW'`` to keep the spectral weights out of Muon.
"""
from __future__ import annotations

import copy
import functools
import importlib.util
import logging
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn
from torch import Tensor

from ..checkpoint import load_plain_weights
from ..convert import CONVERTERS
from ..kinds import KINDS
from ..layers import ExpertConv2d, FDConv, FreqFusion
from ..layers.fourier_dynamic import FourierDynamicBase
from ..profile import profile

_DEFAULTS: dict[str, dict[str, Any]] = {
    **{name: kind.yolo for name, kind in KINDS.items() if kind.yolo_row is not None},
    "freqfusion": {"feature_resample": True},
}
_STATE: dict[str, Any] = {"original": None, "load": None, "get_flops": None, "train": None,
                          "kwargs": copy.deepcopy(_DEFAULTS)}
logger = logging.getLogger(__name__)


class DynamicConvBNAct(nn.Module):
    """A freqdyn conv + BatchNorm + activation: ultralytics' ``Conv`` contract (c1 -> c2, autopad), not its class."""

    def __init__(self, conv: nn.Module, bn: nn.BatchNorm2d, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    @classmethod
    def from_conv_block(cls, block: Any, to: str, **kwargs) -> DynamicConvBNAct:
        """Convert an ultralytics ``Conv`` (conv, bn, act), keeping its weights: equal output at neutral attention."""
        return cls(CONVERTERS[to](block.conv, **kwargs), block.bn, block.act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class C2f_FDConv(nn.Module):  # noqa: N801 - the name YAMLs use
    """Ultralytics ``C2f`` whose bottleneck 3x3 convs (``m[i].cv2``) are FDConv + BN + act; same forward."""

    def __init__(self, c2f: Any, **fdconv_kwargs) -> None:
        from ultralytics.nn.modules.block import Bottleneck

        super().__init__()
        self.c = c2f.c
        self.cv1, self.cv2, self.m = c2f.cv1, c2f.cv2, c2f.m
        bottlenecks: list[Any] = [m for m in self.m.modules() if isinstance(m, Bottleneck)]
        for bottleneck in bottlenecks:  # Any: ultralytics types cv2 as its Conv
            bottleneck.cv2 = DynamicConvBNAct.from_conv_block(bottleneck.cv2, "fdconv", **fdconv_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class C3k2_FDConv(C2f_FDConv):  # noqa: N801 - the name YAMLs use
    """Ultralytics ``C3k2`` (YOLO11's C2f) whose bottleneck 3x3 convs are FDConv + BN + act, at any depth: in its
    ``Bottleneck`` blocks, inside its ``C3k`` blocks (``c3k=True``, the m/l/x scales) and beside its attention
    blocks; the forward is C2f's, as C3k2's."""


class FreqFusionConcat(nn.Module):
    """Replaces an ``nn.Upsample`` + ``Concat`` pair: inputs [lr (B, c_lr, h, w), hr (B, c_hr, H, W)], H = 2h
    (up to rounding) -> cat(FreqFusion's lr_out, hr_out), (B, c_lr + c_hr, H, W): Concat's channel layout."""

    def __init__(self, lr_channels: int, hr_channels: int, **fusion_kwargs) -> None:
        super().__init__()
        fusion_kwargs.setdefault("compressed_channels", max((lr_channels + hr_channels) // 8 // 8 * 8, 8))
        self.fusion = FreqFusion(hr_channels, lr_channels, **fusion_kwargs)

    def forward(self, x: list[Tensor]) -> Tensor:
        lr, hr = x
        hr_out, lr_out = self.fusion(hr, lr)
        return torch.cat([lr_out, hr_out], 1)


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
    **{kind.yolo_row: ("Conv", functools.partial(_convert_conv, to=name))
       for name, kind in KINDS.items() if kind.yolo_row is not None},
    "FreqFusionConcat": ("Concat", None),  # needs its input channels: converted after a probing pass
}


def _gated_note(row: nn.Module) -> str:
    """' (plain: gated)' for a row whose every freqdyn conv the official gating kept plain (FDConv: <= 16 channels
    or another kernel size), so the layer table does not pass it off as dynamic."""
    flags = [m.is_dynamic for m in row.modules() if isinstance(m, FDConv)]
    return " (plain: gated)" if flags and not any(flags) else ""


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


def _table_line(record: logging.LogRecord, model: nn.Sequential) -> str:
    """A row of ultralytics' layer table ('{i:>3}{from:>20}{n:>3}{params:10.0f}  {module:<45}{args}') showing
    the module that row finally holds."""
    line = record.getMessage()
    index = line[:3].strip()
    if not index.isdigit() or int(index) >= len(model) or len(line) < 83:
        return line
    m = model[int(index)]
    return f"{line[:26]}{m.np:10.0f}  {m.type:<45}{line[83:]}"


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
    for record in held.records:  # the table, now with our rows' names and parameter counts
        ultralytics_logger.info(_table_line(record, model) if renamed else record.getMessage())
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
            "shapes match; these layers hold their kernels in other tensors)", len(loaded))


_COUNTED = (FourierDynamicBase, ExpertConv2d, FreqFusion)  # layers whose arithmetic thop does not see


def _get_flops(model: nn.Module, imgsz: int | tuple[int, int] | list[int] = 640) -> float:
    """ultralytics' ``get_flops`` (GFLOPs of ``model.info()``), counted by :func:`freqdyn.profile` for a model
    with freqdyn layers: thop has no rule for them, and its extrapolation from small proxy images assumes costs
    proportional to the image area, which the per-sample kernel synthesis is not."""
    if not any(isinstance(m, _COUNTED) for m in model.modules()):
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
        ours = [name for name, m in model.named_modules() if isinstance(m, _COUNTED)]
        rows = [row[2] for part in ("backbone", "head") for row in cfg.get(part, []) if len(row) > 2]
        if ours and not any(row in ROWS for row in rows):
            raise ValueError(
                f"ultralytics' trainer rebuilds the model from model.yaml, which names none of freqdyn's rows, so "
                f"training would drop the {len(ours)} freqdyn layer(s) of this model (e.g. {ours[0]}). Train a YAML "
                f"with freqdyn's rows instead ({', '.join(ROWS)}; model_yaml() gives the seed's C2f_FDConv model): "
                "YOLO(yaml).train(...) in Python, or 'freqdyn yolo ... model=<yaml>' from the shell.")
    return _STATE["train"](self, *args, **kwargs)


def register(**kwargs: dict[str, Any]) -> None:
    """Make the :data:`ROWS` names usable in YAMLs (idempotent). ``register(fdconv={"kernel_num": 64})`` sets
    the keyword arguments of a target for every row built afterwards."""
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


YAML_TASKS = {"detect": "", "segment": "-seg", "pose": "-pose"}
YAML_VERSIONS = {"yolov8": "C2f_FDConv", "yolo11": "C3k2_FDConv"}


def model_yaml(scale: str = "n", task: str = "pose", version: str = "yolov8") -> str:
    """Path of a packaged YAML: ultralytics' ``{version}{scale}{-seg|-pose}.yaml`` with its backbone's C2f (YOLOv8)
    or C3k2 (YOLO11) rows as C2f_FDConv / C3k2_FDConv; the default is the seed's yolov8{scale}-pose-C2f_FDConv.

    Args:
        scale: n, s, m, l or x (ultralytics reads it from the file name).
        task: ``'detect'``, ``'segment'`` or ``'pose'`` (nc 1, kpt_shape [17, 3]).
        version: ``'yolov8'`` or ``'yolo11'``.
    """
    if scale not in "nsmlx" or len(scale) != 1:
        raise ValueError(f"scale must be one of n, s, m, l, x, got {scale!r}")
    if task not in YAML_TASKS:
        raise ValueError(f"task must be one of {sorted(YAML_TASKS)}, got {task!r}")
    if version not in YAML_VERSIONS:
        raise ValueError(f"version must be one of {sorted(YAML_VERSIONS)}, got {version!r}")
    name = f"{version}{scale}{YAML_TASKS[task]}-{YAML_VERSIONS[version]}.yaml"
    return str(Path(str(resources.files("freqdyn.integrations") / "cfg" / name)))


if importlib.util.find_spec("ultralytics") is not None:
    # Importing this module registers the rows. Unpickling a checkpoint or DDP state that holds them imports it,
    # so a resumed run (``yolo ... resume``, ``YOLO("last.pt").train(resume=True)``) and DDP workers know the
    # rows without a register() call of their own.
    register()
