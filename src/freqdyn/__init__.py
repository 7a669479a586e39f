"""freqdyn: frequency-aware and dynamic convolution blocks for dense image prediction."""
from .convert import ConversionReport, convert, count_parameters
from .layers import (
    CondConv2d,
    DynamicConv2d,
    FDConv,
    FDLinear,
    FrequencyBandModulation,
    ODConv2d,
    StarReLU,
    TemperatureSchedule,
    set_temperature,
)
from .overhead import format_overhead, param_overhead
from .version import __version__

__all__ = [
    "CondConv2d",
    "ConversionReport",
    "DynamicConv2d",
    "FDConv",
    "FDLinear",
    "FrequencyBandModulation",
    "ODConv2d",
    "StarReLU",
    "TemperatureSchedule",
    "__version__",
    "convert",
    "count_parameters",
    "format_overhead",
    "param_overhead",
    "set_temperature",
]
