"""UniConvNet's layers (ICCV 2025): the multi-stage receptive field aggregator MRFA, its block, DCNv3 (the stem and
downsampling of the models), DropPath and LayerNorm2d. The models are in :mod:`freqdyn.models`."""
from .block import UniConvNetBlock
from .dcnv3 import DCNv3, dcnv3_sample
from .drop_path import DropPath
from .layer_norm2d import LayerNorm2d
from .mrfa import MRFA

__all__ = ["DCNv3", "MRFA", "DropPath", "LayerNorm2d", "UniConvNetBlock", "dcnv3_sample"]
