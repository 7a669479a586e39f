"""Layers: one concept per module, re-exported flat (timm ``layers`` style)."""
from .batched_conv import batched_conv2d
from .cond_conv2d import CondConv2d
from .dynamic_conv2d import DynamicConv2d
from .expert_conv import ExpertAttention, ExpertConv2d
from .odconv2d import ODConv2d
from .fdconv import FDConv
from .fdlinear import FDLinear
from .fourier_weight import frequency_groups, matrix_to_weight, weight_to_matrix
from .frequency_band_modulation import FrequencyBandModulation
from .kernel_spatial_modulation import KernelSpatialModulationGlobal, KernelSpatialModulationLocal
from .star_relu import StarReLU
from .temperature import TemperatureSchedule, set_temperature

__all__ = [
    "CondConv2d",
    "DynamicConv2d",
    "ExpertAttention",
    "ExpertConv2d",
    "FDConv",
    "FDLinear",
    "FrequencyBandModulation",
    "KernelSpatialModulationGlobal",
    "KernelSpatialModulationLocal",
    "ODConv2d",
    "StarReLU",
    "TemperatureSchedule",
    "batched_conv2d",
    "frequency_groups",
    "matrix_to_weight",
    "set_temperature",
    "weight_to_matrix",
]
