"""What counts as a freqdyn layer: the one list that the profiler, the analysis tools, checkpoint loading and the
mmengine and ultralytics integrations read.
"""

from __future__ import annotations

import torch.nn as nn

from .fdconv import FDConv, FDLinear, FDLinearQwen
from .fdconv.fourier_dynamic import FourierDynamicBase
from .freqfusion import FreqFusion, FreqFusionFPN
from .kernel_bank import CondConv2d, DynamicConv2d, ExpertConv2d, ODConv2d
from .kernel_warehouse import KWConvNd
from .uniconvnet import MRFA, DCNv3, UniConvNetBlock

FREQDYN_LAYERS: tuple[type[nn.Module], ...] = (
    FDConv,
    FDLinear,
    FDLinearQwen,
    DynamicConv2d,
    CondConv2d,
    ODConv2d,
    FreqFusion,
    FreqFusionFPN,
    MRFA,
    UniConvNetBlock,
    DCNv3,
)
"""The public layers: one row each in :func:`freqdyn.profile`, each registered with mmengine, each counted by
freqdyn (not thop) in ultralytics."""


def is_dynamic(module: nn.Module) -> bool:
    """Whether ``module`` mixes a kernel bank per sample: a DY-Conv / CondConv / ODConv, FDConv or FDLinear, or a
    KernelWarehouse conv (its bank: the cells of its warehouse).
    """
    return isinstance(module, ExpertConv2d | FourierDynamicBase | KWConvNd)


def dynamic_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers of ``model`` that mix a kernel bank (name -> layer), in module order."""
    return {name: module for name, module in model.named_modules() if is_dynamic(module)}


_KERNEL_KEYS = {"weight", "bias", "dft_weight", "freq_group"}  # what a plain checkpoint's conv provides


def attention_keys(module: nn.Module) -> dict[str, str]:
    """State-dict keys of the attention parameters (and buffers) of every dynamic layer in ``module``, to its layer's
    name: the keys a plain checkpoint cannot hold (its layers start neutral without them).
    """
    keys = {}
    for name, layer in dynamic_layers(module).items():
        prefix = f"{name}." if name else ""
        keys.update({prefix + key: name for key in layer.state_dict() if "." in key or key not in _KERNEL_KEYS})
    return keys
