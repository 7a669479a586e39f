"""Slow, straightforward reference computations used to validate and benchmark the fast layers."""
from .naive_dynamic import naive_expert_conv
from .naive_fdconv import naive_fdconv, naive_lowpass

__all__ = ["naive_expert_conv", "naive_fdconv", "naive_lowpass"]
