"""Pretrained weights into dynamic layers: a plain network's state into a freqdyn model, and checkpoint files.

A freqdyn layer that replaces an ``nn.Conv2d`` / ``nn.Linear`` loads that layer's ``weight`` / ``bias`` by
conversion (the maths of ``from_conv``, attention neutral), so the freshly built network computes the
pretrained function. :func:`load_plain_weights` applies that to a model whose host library drops keys it
does not recognise (ultralytics' ``intersect_dicts``); :func:`convert_checkpoint` rewrites a checkpoint's
convolution weights into the state of the target layers, which then load with ``strict=True``.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from .layers.catalog import is_dynamic
from .targets import CONV_TARGETS, TARGETS

logger = logging.getLogger(__name__)


def load_plain_weights(model: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Load plain conv / linear weights of ``state_dict`` into the dynamic freqdyn layers of ``model``.

    Every dynamic layer named ``n`` whose ``n.weight`` in ``state_dict`` has the shape of the plain layer it
    replaces loads ``n.weight`` (and ``n.bias``) by conversion. Returns the names of the layers loaded.
    """
    loaded = []
    for name, module in model.named_modules():
        if not is_dynamic(module):
            continue
        weight = state_dict.get(f"{name}.weight" if name else "weight")
        if not isinstance(weight, Tensor) or not module.is_plain_weight(weight):
            continue
        part = {"weight": weight}
        bias = state_dict.get(f"{name}.bias" if name else "bias")
        if isinstance(bias, Tensor) and bias.dim() == 1 and module.bias is not None:
            part["bias"] = bias
        module.load_state_dict(part, strict=False)
        loaded.append(name)
    return loaded


@dataclass
class CheckpointReport:
    """What :func:`convert_checkpoint` did: converted conv names and skipped ones with the reason."""

    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"converted {len(self.converted)} conv(s), skipped {len(self.skipped)}"


def convert_checkpoint(
    state_dict: Mapping[str, Any],
    to: str = "fdconv",
    *,
    include: str | None = None,
    exclude: str | None = None,
    **kwargs,
) -> tuple[dict[str, Any], CheckpointReport]:
    """Rewrite every 4-D ``<name>.weight`` (an ``nn.Conv2d`` kernel, groups = 1) into the state of ``to``'s layer.

    ``include`` / ``exclude`` are regular expressions searched in ``<name>``; ``kwargs`` go to the target's
    ``from_conv`` and must match how the model is built (e.g. ``kernel_num``). A conv the target keeps plain
    by its own gating (FDConv: <= 16 channels or a kernel outside {1, 3}) is left as it is, so the result
    loads with ``strict=True`` into a model built with the same options.

    Args:
        state_dict: a plain network's state_dict.
        to: the target (as :func:`freqdyn.convert`).
        include: a regular expression selecting the convs to convert (all by default).
        exclude: a regular expression of convs to leave plain, applied after ``include``.
        **kwargs: the target layer's options, as the model is built.

    Returns:
        The new state_dict and a :class:`CheckpointReport` (converted and skipped names).

    Examples:
        >>> from freqdyn import convert
        >>> plain = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3))
        >>> state, report = convert_checkpoint(plain.state_dict(), "fdconv", kernel_num=8)
        >>> model = convert(torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3)), "fdconv", kernel_num=8).model
        >>> model.load_state_dict(state, strict=True)
        <All keys matched successfully>
    """
    targets = sorted(CONV_TARGETS)
    if to not in targets:
        raise ValueError(f"unknown convolution target {to!r}; choose from {targets}")
    out = dict(state_dict)
    report = CheckpointReport()
    for key, weight in state_dict.items():
        if not key.endswith("weight") or not isinstance(weight, Tensor) or weight.dim() != 4:
            continue
        name = key[: -len("weight")].rstrip(".")
        if include is not None and re.search(include, name) is None:
            report.skipped[name] = "not included"
            continue
        if exclude is not None and re.search(exclude, name):
            report.skipped[name] = "excluded"
            continue
        prefix = f"{name}." if name else ""
        bias = state_dict.get(prefix + "bias")
        work = torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype
        conv = nn.Conv2d(
            weight.shape[1],
            weight.shape[0],
            (weight.shape[2], weight.shape[3]),
            bias=isinstance(bias, Tensor),
            dtype=work,
        )
        with torch.no_grad():
            conv.weight.copy_(weight)
            if conv.bias is not None and isinstance(bias, Tensor):
                conv.bias.copy_(bias)
        layer = TARGETS[to].convert(conv, **kwargs)
        if not is_dynamic(layer):
            report.skipped[name] = "kept as a plain convolution by the target's gating"
            continue
        out.pop(prefix + "weight")
        out.pop(prefix + "bias", None)
        out.update(
            {prefix + k: v.to(weight.dtype) if v.is_floating_point() else v for k, v in layer.state_dict().items()}
        )
        report.converted.append(name)
    logger.info("convert_checkpoint(to=%r): %s", to, report)
    return out, report


class CheckpointFileError(ValueError):
    """A checkpoint file that cannot be read, said in one line: missing, not a torch file (truncated or corrupt), or
    holding pickled objects that ``trust`` did not allow.
    """


def load_file(path: str, trust: bool) -> Any:
    """``torch.load`` of a checkpoint: tensors only unless ``trust`` (pickled objects run code when loaded); a file
    that cannot be read raises :class:`CheckpointFileError` naming it and the problem.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointFileError(f"{path}: {'a folder, not a file' if file.is_dir() else 'no such file'}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error):
            raise CheckpointFileError(
                f"{path} holds pickled objects besides tensors (an ultralytics .pt, or an mmengine checkpoint with "
                "its training state); rerun with --trust-checkpoint if you trust the file"
            ) from error
        raise CheckpointFileError(_unreadable(path, error)) from error
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError, ImportError) as error:
        raise CheckpointFileError(_unreadable(path, error)) from error


def _unreadable(path: str, error: Exception) -> str:
    """One line for a file torch cannot read: what torch found, without its advice (weights_only=False would not
    help a corrupt file).
    """
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    found = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
    found = found.split(". This is an internal", 1)[0][:160]
    return (
        f"{path} is not a readable torch checkpoint: truncated, corrupt or another format "
        f"({type(error).__name__}: {found})"
    )


def held_module(checkpoint: Any) -> nn.Module | None:
    """The model an ultralytics checkpoint pickles (its EMA when present), or None."""
    if isinstance(checkpoint, nn.Module):
        return checkpoint
    if isinstance(checkpoint, dict):
        for key in ("ema", "model"):
            if isinstance(checkpoint.get(key), nn.Module):
                return checkpoint[key]
    return None


def fitted_state(state: dict, model: nn.Module) -> tuple[dict, str, list[str]]:
    """``state`` under the key prefix that matches ``model`` best (mmdet's 'backbone.', DDP's 'module.' ...), without
    the tensors whose shape differs from the model's (another class count): (state, prefix, skipped).
    """
    own = model.state_dict()
    best, prefix = state, ""
    for candidate in sorted({key.split(".", 1)[0] + "." for key in state if "." in key}):
        stripped = {k[len(candidate) :]: v for k, v in state.items() if k.startswith(candidate)}
        if sum(k in own for k in stripped) > sum(k in own for k in best):
            best, prefix = stripped, candidate
    skipped = [
        f"{k}: {tuple(v.shape)} in the checkpoint, {tuple(own[k].shape)} here"
        for k, v in best.items()
        if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
    ]
    return {k: v for k, v in best.items() if k not in own or v.shape == own[k].shape}, prefix, skipped


def checkpoint_state(checkpoint: Any) -> tuple[dict, str | None]:
    """The state_dict inside a checkpoint: the object itself, or under 'state_dict' (mmengine) or 'model'."""
    if isinstance(checkpoint, dict):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                return checkpoint[key], key
        return checkpoint, None
    raise ValueError(f"expected a state_dict or a dict holding one, got {type(checkpoint).__name__}")
