"""Layers, re-exported flat (timm ``layers`` style) from five families on a private floor.

- :mod:`.fdconv`: FDConv, FDLinear, FDLinearQwen and their parts (FDW, KSM, FBM), StarReLU;
- :mod:`.kernel_bank`: DY-Conv (``DynamicConv2d``), CondConv, ODConv and the temperature schedule;
- :mod:`.kernel_warehouse`: KernelWarehouse (KW conv 1-D/2-D/3-D and linear layers, their warehouse manager, the
  temperature schedule and the network conversion);
- :mod:`.freqfusion`: FreqFusion, its FPN neck, CARAFE and the sampler;
- :mod:`.uniconvnet`: MRFA, the UniConvNet block, DCNv3, DropPath, LayerNorm2d;
- ``_common``: what they share (the Conv2d contract, the attention trunk, the batched conv, program-mode queries).

The number of kernels a dynamic conv mixes, K, is ``kernel_num`` in FDConv's signature (the official name) and
``num_experts`` in DY-Conv / CondConv / ODConv's (timm's); every internal helper calls it ``num_kernels``.
"""

from . import _compat
from ._common.attention_heads import Attentions
from ._common.batched_conv import batched_conv2d
from ._common.checks import ArgumentTypeError
from ._common.flop_record import flop_recording
from .fdconv import (
    FDConv,
    FDLinear,
    FDLinearQwen,
    FourierDynamicBase,
    FrequencyBandModulation,
    KernelSpatialModulationGlobal,
    KernelSpatialModulationLocal,
    StarReLU,
    frequency_groups,
    gated_fdconv,
    gated_from_conv,
    matrix_to_weight,
    uses_fdconv,
    weight_to_matrix,
)
from .freqfusion import FreqFusion, FreqFusionFPN, LocalSimGuidedSampler, carafe, local_similarity
from .kernel_bank import CondConv2d, DynamicConv2d, ExpertConv2d, ODConv2d, TemperatureSchedule, set_temperature
from .kernel_warehouse import (
    KWConv1d,
    KWConv2d,
    KWConv3d,
    KWLinear,
    KWTemperatureSchedule,
    WarehouseManager,
    set_warehouse_temperature,
)
from .uniconvnet import MRFA, DCNv3, DropPath, LayerNorm2d, UniConvNetBlock, dcnv3_sample

_compat.install(__name__)

__all__ = [
    "MRFA",
    "ArgumentTypeError",
    "Attentions",
    "CondConv2d",
    "DCNv3",
    "DropPath",
    "DynamicConv2d",
    "ExpertConv2d",
    "FDConv",
    "FDLinear",
    "FDLinearQwen",
    "FourierDynamicBase",
    "FreqFusion",
    "FreqFusionFPN",
    "FrequencyBandModulation",
    "KWConv1d",
    "KWConv2d",
    "KWConv3d",
    "KWLinear",
    "KWTemperatureSchedule",
    "KernelSpatialModulationGlobal",
    "KernelSpatialModulationLocal",
    "LayerNorm2d",
    "LocalSimGuidedSampler",
    "ODConv2d",
    "StarReLU",
    "TemperatureSchedule",
    "UniConvNetBlock",
    "WarehouseManager",
    "batched_conv2d",
    "carafe",
    "dcnv3_sample",
    "flop_recording",
    "frequency_groups",
    "gated_fdconv",
    "gated_from_conv",
    "local_similarity",
    "matrix_to_weight",
    "set_temperature",
    "set_warehouse_temperature",
    "uses_fdconv",
    "weight_to_matrix",
]
