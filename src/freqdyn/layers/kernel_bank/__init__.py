"""Convolutions that mix a bank of K kernels per sample: DY-Conv (CVPR 2020) with its temperature schedule, and its
peers CondConv and ODConv, on one base (``expert_conv.ExpertConv2d``).
"""

from .cond_conv2d import CondConv2d
from .dynamic_conv2d import DynamicConv2d
from .expert_conv import ExpertConv2d
from .odconv2d import ODConv2d
from .temperature import TemperatureSchedule, set_temperature

__all__ = ["CondConv2d", "DynamicConv2d", "ExpertConv2d", "ODConv2d", "TemperatureSchedule", "set_temperature"]
