"""UniConvNet (ICCV 2025): the multi-stage receptive field aggregator MRFA, its block, DCNv3 (the stem and
downsampling of the networks), DropPath, LayerNorm2d, and the networks of scales A to XL (``network``, public as
:mod:`freqdyn.models`).
"""

from .block import UniConvNetBlock
from .dcnv3 import DCNv3, dcnv3_sample
from .drop_path import DropPath
from .layer_norm2d import LayerNorm2d
from .mrfa import MRFA
from .network import SCALES, UniConvNet, UniConvNetStageBlock, scale_args, uniconvnet

__all__ = [
    "MRFA",
    "SCALES",
    "DCNv3",
    "DropPath",
    "LayerNorm2d",
    "UniConvNet",
    "UniConvNetBlock",
    "UniConvNetStageBlock",
    "dcnv3_sample",
    "scale_args",
    "uniconvnet",
]
