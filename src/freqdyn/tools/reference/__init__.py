"""Slow, straightforward reference computations used to validate and benchmark the fast layers."""

from .naive_carafe import naive_carafe
from .naive_dynamic import naive_expert_conv
from .naive_fdconv import naive_fdconv, naive_lowpass
from .naive_freq_fusion import naive_freq_fusion

__all__ = ["naive_carafe", "naive_expert_conv", "naive_fdconv", "naive_freq_fusion", "naive_lowpass"]
