"""freqdyn: frequency-aware and dynamic convolution blocks for dense image prediction."""
from .convert import ConversionReport, convert, count_parameters
from .layers import (
    MRFA,
    CondConv2d,
    DCNv3,
    DropPath,
    DynamicConv2d,
    FDConv,
    FDLinear,
    FDLinearQwen,
    FreqFusion,
    FreqFusionFPN,
    FrequencyBandModulation,
    LayerNorm2d,
    ODConv2d,
    StarReLU,
    TemperatureSchedule,
    UniConvNetBlock,
    gated_fdconv,
    set_temperature,
)
from .models import UniConvNet, uniconvnet
from .profile import Profile, profile
from .tools.overhead import format_overhead, param_overhead
from .version import __version__

__all__ = [
    "CondConv2d",
    "DCNv3",
    "UniConvNet",
    "uniconvnet",
    "ConversionReport",
    "DropPath",
    "DynamicConv2d",
    "FDConv",
    "FDLinear",
    "FDLinearQwen",
    "FreqFusion",
    "FreqFusionFPN",
    "FrequencyBandModulation",
    "LayerNorm2d",
    "MRFA",
    "ODConv2d",
    "Profile",
    "StarReLU",
    "TemperatureSchedule",
    "UniConvNetBlock",
    "__version__",
    "convert",
    "count_parameters",
    "format_overhead",
    "gated_fdconv",
    "param_overhead",
    "profile",
    "set_temperature",
]
