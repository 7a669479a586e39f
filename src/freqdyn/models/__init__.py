"""Whole networks built from freqdyn layers: UniConvNet, scales A to XL (from the uniconvnet family)."""

from ..layers.uniconvnet import SCALES, UniConvNet, UniConvNetStageBlock, scale_args, uniconvnet

__all__ = ["SCALES", "UniConvNet", "UniConvNetStageBlock", "scale_args", "uniconvnet"]
