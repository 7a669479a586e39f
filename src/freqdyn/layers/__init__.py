"""Layers: one concept per module, re-exported flat (timm ``layers`` style)."""
from .batched_conv import batched_conv2d
from .fdconv import FDConv
from .fdlinear import FDLinear
from .fourier_weight import frequency_groups, matrix_to_weight, weight_to_matrix
from .frequency_band_modulation import FrequencyBandModulation
from .kernel_spatial_modulation import KernelSpatialModulationGlobal, KernelSpatialModulationLocal
from .star_relu import StarReLU

__all__ = [
    "FDConv",
    "FDLinear",
    "FrequencyBandModulation",
    "KernelSpatialModulationGlobal",
    "KernelSpatialModulationLocal",
    "StarReLU",
    "batched_conv2d",
    "frequency_groups",
    "matrix_to_weight",
    "weight_to_matrix",
]
