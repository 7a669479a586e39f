"""Eager input validation shared by every layer: clear ``ValueError`` instead of errors deep inside torch."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable

import numpy as np
from torch import Tensor


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: a ``TypeError``, as torch raises, and a ``ValueError``, as freqdyn's other
    argument errors (so code that catches either keeps working).
    """


def _wrong_type(name: str, expected: str, value: object) -> ArgumentTypeError:
    return ArgumentTypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (numpy integers accepted; bools are not ints here), else an error naming
    ``name``: :class:`ArgumentTypeError` for another type, ``ValueError`` below the minimum.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _wrong_type(name, f"an int >= {minimum}", value)
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_real(value: object, name: str, minimum: float = -math.inf, *, above: bool = False) -> float:
    """``value`` as a finite float >= ``minimum`` (> with ``above``), else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _wrong_type(name, "a number", value)
    number = float(value)
    if not math.isfinite(number) or number < minimum or (above and number == minimum):
        bound = "" if minimum == -math.inf else f" {'>' if above else '>='} {minimum:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return number


def check_positive(value: object, name: str) -> float:
    """``value`` as a finite float > 0, else an error naming ``name`` (a zero temperature gives NaN)."""
    return check_real(value, name, 0.0, above=True)


def check_ints(value: object, name: str, minimum: int = 1) -> tuple[int, ...]:
    """A sequence of ints >= ``minimum`` as a tuple, else an error naming ``name``."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise _wrong_type(name, f"a sequence of ints >= {minimum}", value)
    return tuple(check_int(v, f"{name} element", minimum) for v in value)


def check_bool(value: object, name: str) -> bool:
    """``value`` as a bool (numpy bools accepted), else :class:`ArgumentTypeError` naming ``name``."""
    if not isinstance(value, bool | np.bool_):
        raise _wrong_type(name, "a bool", value)
    return bool(value)


def check_feature_map(x: Tensor, channels: int, layer: str) -> None:
    """Validate a (B, C, H, W) floating-point feature map with ``channels`` channels (B = 0 allowed)."""
    if not isinstance(x, Tensor):
        raise ArgumentTypeError(f"{layer}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{layer}: expected a 4-D (B, C, H, W) input, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ArgumentTypeError(f"{layer}: expected a floating-point input, got dtype {x.dtype}")
    if x.shape[1] != channels:
        raise ValueError(f"{layer}: expected {channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{layer}: got an empty spatial size, shape {tuple(x.shape)}")


def check_features_last(x: Tensor, features: int, layer: str) -> None:
    """Validate a (B, ..., features) floating-point tensor (empty allowed, as for ``nn.Linear``)."""
    if not isinstance(x, Tensor):
        raise ArgumentTypeError(f"{layer}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{layer}: expected a (B, ..., {features}) input, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ArgumentTypeError(f"{layer}: expected a floating-point input, got dtype {x.dtype}")
    if x.shape[-1] != features:
        raise ValueError(f"{layer}: expected {features} input features, got {x.shape[-1]} (shape {tuple(x.shape)})")


def load_checked_temperature(
    state_dict: dict, key: str, current: Tensor, check: Callable[[float], float], older: Tensor | None = None
) -> None:
    """Prepare ``state_dict[key]``, a temperature buffer, for loading: a state_dict without it (reference code, whose
    temperature is not state) takes ``older`` (an earlier freqdyn format's value) or keeps ``current``; the value is
    then ``check``-ed (a ``ValueError`` for an invalid one), except on the meta device.
    """
    if key not in state_dict:
        state_dict[key] = current.clone() if older is None else older
    value = state_dict[key]
    if isinstance(value, Tensor) and not value.is_meta:
        check(float(value))
