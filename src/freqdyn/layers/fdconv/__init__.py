"""FDConv (CVPR 2025) and its linear modes: Fourier Disjoint Weights (``spectrum``, ``fourier_dynamic``), Kernel
Spatial Modulation (``kernel_spatial_modulation``), Frequency Band Modulation (``frequency_band_modulation`` on the
low-pass operators of ``low_pass``), and StarReLU.
"""

from .conv import FDConv
from .fourier_dynamic import FourierDynamicBase
from .frequency_band_modulation import FrequencyBandModulation
from .gating import gated_fdconv, gated_from_conv, uses_fdconv
from .kernel_spatial_modulation import KernelSpatialModulationGlobal, KernelSpatialModulationLocal
from .linear import FDLinear
from .linear_qwen import FDLinearQwen
from .spectrum import frequency_groups, matrix_to_weight, weight_to_matrix
from .star_relu import StarReLU

__all__ = [
    "FDConv",
    "FDLinear",
    "FDLinearQwen",
    "FourierDynamicBase",
    "FrequencyBandModulation",
    "KernelSpatialModulationGlobal",
    "KernelSpatialModulationLocal",
    "StarReLU",
    "frequency_groups",
    "gated_fdconv",
    "gated_from_conv",
    "matrix_to_weight",
    "uses_fdconv",
    "weight_to_matrix",
]
