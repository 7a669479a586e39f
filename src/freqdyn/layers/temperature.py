"""Softmax temperature of dynamic layers and its annealing schedule (DY-Conv §3.3)."""
from __future__ import annotations

import struct
from typing import Any

import torch
import torch.nn as nn

from ._checks import check_positive


def check_temperature(value: float) -> float:
    return check_positive(value, "temperature")


def _bits(value: float) -> int:
    return struct.unpack("<q", struct.pack("<d", value))[0]


def _from_bits(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<q", bits))[0]


class TemperatureMixin:
    """For layers whose ``attention`` module divides its logits by ``attention.temperature``.

    The temperature is state: it is saved in the ``temperature_bits`` buffer (the float64 bit pattern as an
    int64, which ``.half()`` / ``.float()`` and fp16 EMA checkpoints leave exact) and restored on load, so an
    annealed model reloads at its temperature. A checkpoint without it (reference code) keeps the current one.
    """

    attention: Any  # the layer's attention module; it has a float ``temperature``
    temperature_bits: torch.Tensor

    def _register_temperature(self) -> None:
        device = self.weight.device  # type: ignore[attr-defined]
        self.register_buffer("temperature_bits", torch.tensor(_bits(self.attention.temperature), device=device))  # type: ignore[attr-defined]

    @property
    def temperature(self) -> float:
        return self.attention.temperature

    def set_temperature(self, value: float) -> None:
        self.attention.temperature = check_temperature(value)
        self.temperature_bits.fill_(_bits(self.attention.temperature))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        state_dict.setdefault(prefix + "temperature_bits", self.temperature_bits.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]
        self.attention.temperature = check_temperature(_from_bits(int(self.temperature_bits.item())))

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
    """

    def __init__(
        self, model: nn.Module, start: float = 30.0, end: float = 1.0, epochs: int = 10,
        step_size: float | None = None,
    ) -> None:
        check_temperature(end)
        if start < end:
            raise ValueError(f"start temperature {start} must be >= end temperature {end}")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if step_size is not None and step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
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
