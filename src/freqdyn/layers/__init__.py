"""Layers: one concept per module, re-exported flat (timm ``layers`` style).

The number of kernels a dynamic conv mixes, K, is ``kernel_num`` in FDConv's signature (the official name) and
``num_experts`` in DY-Conv / CondConv / ODConv's (timm's); every internal helper calls it ``num_kernels``.
"""
from .attention_heads import Attentions
from .batched_conv import batched_conv2d
from .carafe import carafe
from .cond_conv2d import CondConv2d
from .dcnv3 import DCNv3, dcnv3_sample
from .drop_path import DropPath
from .dynamic_conv2d import DynamicConv2d
from .expert_conv import ExpertConv2d
from .fdconv import FDConv
from .fdlinear import FDLinear
from .fdlinear_qwen import FDLinearQwen
from .fourier_weight import frequency_groups, matrix_to_weight, weight_to_matrix
from .freq_fusion import FreqFusion
from .freq_fusion_fpn import FreqFusionFPN
from .frequency_band_modulation import FrequencyBandModulation
from .kernel_spatial_modulation import KernelSpatialModulationGlobal, KernelSpatialModulationLocal
from .layer_norm2d import LayerNorm2d
from .local_sim_sampler import LocalSimGuidedSampler, local_similarity
from .mrfa import MRFA
from .odconv2d import ODConv2d
from .star_relu import StarReLU
from .temperature import TemperatureSchedule, set_temperature
from .uniconvnet_block import UniConvNetBlock

__all__ = [
    "DCNv3",
    "dcnv3_sample",
    "CondConv2d",
    "DropPath",
    "DynamicConv2d",
    "Attentions",
    "ExpertConv2d",
    "FDConv",
    "FDLinear",
    "FDLinearQwen",
    "FreqFusion",
    "FreqFusionFPN",
    "FrequencyBandModulation",
    "KernelSpatialModulationGlobal",
    "KernelSpatialModulationLocal",
    "LayerNorm2d",
    "LocalSimGuidedSampler",
    "MRFA",
    "ODConv2d",
    "StarReLU",
    "TemperatureSchedule",
    "UniConvNetBlock",
    "batched_conv2d",
    "carafe",
    "frequency_groups",
    "local_similarity",
    "matrix_to_weight",
    "set_temperature",
    "weight_to_matrix",
]
