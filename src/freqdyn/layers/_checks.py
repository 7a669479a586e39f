"""Eager input validation shared by every layer: clear ``ValueError`` instead of errors deep inside torch."""
from __future__ import annotations

import math
import numbers

from torch import Tensor


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (numpy integers accepted), else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_positive(value: object, name: str) -> float:
    """``value`` as a finite float > 0, else a ``ValueError`` naming ``name`` (a zero temperature gives NaN)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) < math.inf:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_feature_map(x: Tensor, channels: int, layer: str) -> None:
    """Validate a (B, C, H, W) floating-point feature map with ``channels`` channels (B = 0 allowed)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{layer}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{layer}: expected a 4-D (B, C, H, W) input, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{layer}: expected a floating-point input, got dtype {x.dtype}")
    if x.shape[1] != channels:
        raise ValueError(f"{layer}: expected {channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{layer}: got an empty spatial size, shape {tuple(x.shape)}")


def check_features_last(x: Tensor, features: int, layer: str) -> None:
    """Validate a (B, ..., features) floating-point tensor (empty allowed, as for ``nn.Linear``)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{layer}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{layer}: expected a (B, ..., {features}) input, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{layer}: expected a floating-point input, got dtype {x.dtype}")
    if x.shape[-1] != features:
        raise ValueError(f"{layer}: expected {features} input features, got {x.shape[-1]} (shape {tuple(x.shape)})")

