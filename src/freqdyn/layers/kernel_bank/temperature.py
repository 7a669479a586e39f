"""Softmax temperature of dynamic layers and its annealing schedule (DY-Conv §3.3)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from .._common.checks import check_int, check_positive, load_checked_temperature
from .._compat import temperature_from_bits


def check_temperature(value: float) -> float:
    """``value`` if it is a positive real temperature, else a ``ValueError``."""
    return check_positive(value, "temperature")


class TemperatureBuffer(nn.Module):
    """Base of attention modules that divide their logits by a ``temperature`` buffer (a float scalar).

    A buffer, not a Python float, so that everything that moves float state moves the temperature with the
    weights: EMA copies (timm's and ultralytics', which lerp float state only), DDP's buffer broadcast,
    ``functional_call``, ``load_state_dict`` and ``.to(dtype)`` (a float16 copy holds the float16 value).
    """

    temperature: Tensor
    initial_temperature: float

    def _register_temperature(self, value: float, device: torch.device | None, dtype: torch.dtype | None) -> None:
        self.initial_temperature = check_temperature(value)
        self.register_buffer("temperature", torch.tensor(value, device=device, dtype=dtype))

    def reset_temperature(self) -> None:
        """Back to the temperature the module was built with (also rebuilds it after a meta-device build)."""
        with torch.no_grad():
            self.temperature.fill_(self.initial_temperature)


class TemperatureMixin:
    """For layers whose ``attention`` module divides its logits by its ``temperature`` buffer.

    The buffer is the state (``attention.temperature`` in the state_dict), so an annealed model reloads,
    averages and broadcasts at its temperature. A checkpoint without it (reference code) keeps the current
    one; one with the ``temperature_bits`` buffer of older freqdyn versions loads that value.
    """

    attention: Any  # a TemperatureBuffer (typed as Any: ExpertConv2d declares its own attention protocol)

    @property
    def temperature(self) -> float:
        return float(self.attention.temperature)

    def set_temperature(self, value: float) -> None:
        with torch.no_grad():
            self.attention.temperature.fill_(check_temperature(value))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        older = temperature_from_bits(state_dict, prefix)
        key = prefix + "attention.temperature"
        load_checked_temperature(state_dict, key, self.attention.temperature, check_temperature, older)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", temperature={self.temperature:g}"  # type: ignore[misc]


def set_temperature(model: nn.Module, value: float) -> int:
    """Set the temperature of every temperature-annealed layer in ``model``; returns how many were set."""
    layers = [m for m in model.modules() if isinstance(m, TemperatureMixin)]
    for layer in layers:
        layer.set_temperature(value)
    return len(layers)


class TemperatureSchedule:
    """Anneals the softmax temperature of every dynamic layer in ``model``; call :meth:`step` once per epoch.

    Linear (the DY-Conv paper): T goes from ``start`` (30) to ``end`` (1) over ``epochs`` (10) steps, then
    stays at ``end``. With ``step_size`` set, T drops by that amount each step until ``end`` (the common
    re-implementation: 34, 31, ..., 4, 1 with ``start=34, step_size=3``). The schedule is applied at
    construction (epoch 0).

    Args:
        model: the model whose dynamic layers (DY-Conv, ODConv) are annealed.
        start, end: first and last temperature.
        epochs: steps of the linear schedule.
        step_size: the drop per step of the stepped schedule (``None``: linear).

    Examples:
        >>> from freqdyn import DynamicConv2d
        >>> model = torch.nn.Sequential(DynamicConv2d(8, 8, 3))
        >>> schedule = TemperatureSchedule(model, start=30, end=1, epochs=10)
        >>> model[0].temperature
        30.0
        >>> round(schedule.step(), 1)  # after one epoch
        27.1
    """

    def __init__(
        self,
        model: nn.Module,
        start: float = 30.0,
        end: float = 1.0,
        epochs: int = 10,
        step_size: float | None = None,
    ) -> None:
        start, end, epochs = check_positive(start, "start"), check_positive(end, "end"), check_int(epochs, "epochs")
        if start < end:
            raise ValueError(f"start ({start}) must be >= end ({end}): the temperature anneals downwards")
        step_size = None if step_size is None else check_positive(step_size, "step_size")
        self.model, self.start, self.end, self.epochs, self.step_size = model, start, end, epochs, step_size
        self.epoch = 0
        self.num_layers = set_temperature(model, self.value(0))

    def value(self, epoch: int) -> float:
        """Temperature after ``epoch`` steps."""
        if self.step_size is not None:
            return max(self.start - self.step_size * epoch, self.end)
        return self.start + (self.end - self.start) * min(epoch, self.epochs) / self.epochs

    def step(self) -> float:
        """Advance one epoch, apply and return the new temperature."""
        self.epoch += 1
        value = self.value(self.epoch)
        set_temperature(self.model, value)
        return value

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])
        set_temperature(self.model, self.value(self.epoch))
