"""Whole networks built from freqdyn layers."""
from .uniconvnet import SCALES, UniConvNet, UniConvNetStageBlock, uniconvnet

__all__ = ["SCALES", "UniConvNet", "UniConvNetStageBlock", "uniconvnet"]
