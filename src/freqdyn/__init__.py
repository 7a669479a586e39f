"""freqdyn: frequency-aware and dynamic convolution blocks for dense image prediction."""
from .convert import ConversionReport, convert, count_parameters
from .layers import FDConv, FDLinear, FrequencyBandModulation, StarReLU
from .version import __version__

__all__ = [
    "ConversionReport",
    "FDConv",
    "FDLinear",
    "FrequencyBandModulation",
    "StarReLU",
    "__version__",
    "convert",
    "count_parameters",
]
