"""Whole networks built from freqdyn layers."""
from .uniconvnet import SCALES, UniConvNet, UniConvNetStageBlock, scale_args, uniconvnet

__all__ = ["SCALES", "UniConvNet", "UniConvNetStageBlock", "scale_args", "uniconvnet"]
