"""What older pickles need: the module paths of the flat tree (freqdyn <= 7a37871) and of the UniConvNet networks
(``freqdyn.models.uniconvnet``, <= 519b0d1), and gated FDConvs as plain convs.

``torch.save(model)`` and ultralytics' ``last.pt`` pickle each class with its module path; unpickling imports that
path. Each old path is an alias in ``sys.modules`` of the module that holds the class now. ``freqdyn.layers.fdconv``
needs none: it is now the FDConv package, which exports ``FDConv``.
"""

import importlib
import sys

import torch
import torch.nn as nn

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
