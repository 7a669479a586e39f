"""Every shim that lets pickles and checkpoints of earlier freqdyn versions load, each with the release in which
it goes (the policy: CHANGELOG.md). ``tests/project/test_compat.py`` fails once the package version reaches a shim's
release, so none outlives its date unnoticed.

Walls that face other people's files (the authors' checkpoints, timm's and ultralytics' names) are not shims: they
stay in the layers that meet them, for good.

``torch.save(model)`` and ultralytics' ``last.pt`` pickle each class with its module path; unpickling imports that
path. Each old path is an alias in ``sys.modules`` of the module that holds the class now. ``freqdyn.layers.fdconv``
needs none: it is now the FDConv package, which exports ``FDConv``.
"""

import importlib
import struct
import sys
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from ._common.attention_conv import AttentionConv1d

SHIMS = {  # shim -> (what it serves, the release in which it goes)
    "install": ("module paths of the flat tree (<= 7a37871) and freqdyn.models.uniconvnet (<= 519b0d1)", "0.2.0"),
    "become_plain_conv": ("gated FDConvs pickled as plain convs (<= 7a37871)", "0.2.0"),
    "restore_kernel_shape": ("FDConv / FDLinear pickled before kernel_shape was data", "0.2.0"),
    "restore_local_conv": ("KSM-Local pickled with an nn.Conv1d (<= 7a37871)", "0.2.0"),
    "temperature_from_bits": ("the temperature_bits buffer of DY-Conv / CondConv / ODConv checkpoints", "0.2.0"),
}

OLD_PATHS = {
    "_checks": "_common.checks",
    "attention_conv": "_common.attention_conv",
    "attention_heads": "_common.attention_heads",
    "attention_norm": "_common.attention_norm",
    "band_plan": "fdconv.low_pass",
    "batched_conv": "_common.batched_conv",
    "carafe": "freqfusion.carafe",
    "cond_conv2d": "kernel_bank.cond_conv2d",
    "conv_args": "_common.conv_args",
    "conv_contract": "_common.conv_contract",
    "dcnv3": "uniconvnet.dcnv3",
    "drop_path": "uniconvnet.drop_path",
    "dynamic_conv2d": "kernel_bank.dynamic_conv2d",
    "empty_batch": "_common.empty_batch",
    "expert_conv": "kernel_bank.expert_conv",
    "factory": "_common.device_dtype",
    "fdlinear": "fdconv.linear",
    "fdlinear_qwen": "fdconv.linear_qwen",
    "flop_record": "_common.flop_record",
    "fourier_dynamic": "fdconv.fourier_dynamic",
    "fourier_weight": "fdconv.spectrum",
    "freq_fusion": "freqfusion.fusion",
    "freq_fusion_fpn": "freqfusion.fpn",
    "frequency_band_modulation": "fdconv.frequency_band_modulation",
    "kernel_spatial_modulation": "fdconv.kernel_spatial_modulation",
    "layer_norm2d": "uniconvnet.layer_norm2d",
    "local_sim_sampler": "freqfusion.sampler",
    "mrfa": "uniconvnet.mrfa",
    "odconv2d": "kernel_bank.odconv2d",
    "star_relu": "fdconv.star_relu",
    "temperature": "kernel_bank.temperature",
    "trace_only": "_common.trace_only",
    "transforms": "_common.program_mode",
    "uniconvnet_block": "uniconvnet.block",
}


NETWORK_PATHS = {"freqdyn.models.uniconvnet": "uniconvnet.network"}  # full old path -> path under the package


def install(package: str) -> None:
    """Alias ``{package}.{old}`` to ``{package}.{new}`` in ``sys.modules`` for every old path, and each of
    :data:`NETWORK_PATHS` to its module under ``package``.
    """
    for old, new in OLD_PATHS.items():
        sys.modules.setdefault(f"{package}.{old}", importlib.import_module(f"{package}.{new}"))
    for old, new in NETWORK_PATHS.items():
        sys.modules.setdefault(old, importlib.import_module(f"{package}.{new}"))


def become_plain_conv(layer: nn.Module, state: dict) -> None:
    """Unpickle ``state``, a gated FDConv pickled by freqdyn <= 7a37871 (a plain ``weight`` / ``bias`` conv), as the
    ``nn.Conv2d`` that :func:`~freqdyn.layers.fdconv.gating.gated_fdconv` builds for it now.
    """
    params = {"bias": state.get("bias"), **state["_parameters"]}  # a None bias was a plain attribute
    with torch.device("meta"):
        plain = nn.Conv2d(
            state["in_channels"],
            state["out_channels"],
            state["kernel_size"],
            state["stride"],
            state["padding"],
            state["dilation"],
            state["groups"],
            params["bias"] is not None,
            state["padding_mode"],
        )
    kept = {key: state[key] for key in plain.__dict__ if "hook" in key and key in state}
    layer.__class__ = nn.Conv2d
    layer.__dict__.update(
        {
            **plain.__dict__,
            **kept,
            "training": state["training"],
            "_parameters": params,
            "_buffers": dict(state["_buffers"]),
        }
    )


def restore_kernel_shape(layer: Any) -> None:
    """Unpickled ``layer`` (an FDConv or a linear mode) saved before ``kernel_shape`` was data: set it."""
    if "kernel_shape" in layer.__dict__ or "dft_weight" not in layer._parameters:
        return
    if hasattr(layer, "kernel_size"):
        layer.kernel_shape = (layer.out_channels, layer.in_channels // layer.groups, *layer.kernel_size)
    else:
        layer.kernel_shape = (layer.out_features, layer.in_features, 1, 1)


def restore_local_conv(local: nn.Module) -> None:
    """Unpickled KSM-Local whose conv is an ``nn.Conv1d``: the same conv as :class:`AttentionConv1d` (2-D form)."""
    if type(local.conv) is nn.Conv1d:
        local.conv.__class__ = AttentionConv1d


def temperature_from_bits(state_dict: dict[str, Any], prefix: str) -> Tensor | None:
    """Pop the ``temperature_bits`` buffer (the float64 temperature's bit pattern) of an older checkpoint from
    ``state_dict``: its temperature, or None where there is none.
    """
    bits = state_dict.pop(prefix + "temperature_bits", None)
    if bits is None:
        return None
    return torch.tensor(struct.unpack("<d", struct.pack("<q", int(bits)))[0])
