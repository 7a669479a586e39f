"""Module paths of the flat tree (freqdyn <= 7a37871), kept importable for pickles that name them.

``torch.save(model)`` and ultralytics' ``last.pt`` pickle each class with its module path; unpickling imports that
path. Each old path is an alias in ``sys.modules`` of the module that holds the class now. ``freqdyn.layers.fdconv``
needs none: it is now the FDConv package, which exports ``FDConv``.
"""
import importlib
import sys

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


def install(package: str) -> None:
    """Alias ``{package}.{old}`` to ``{package}.{new}`` in ``sys.modules`` for every old path."""
    for old, new in OLD_PATHS.items():
        sys.modules.setdefault(f"{package}.{old}", importlib.import_module(f"{package}.{new}"))
