"""KernelWarehouse's temperature schedule: the one-hot blend of every KW attention, from 1 down to 0 (linearly, per
iteration in the authors' training) over the first ``epochs`` epochs.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .._common.checks import check_int
from .attention import WarehouseAttention, check_warehouse_temperature


def set_warehouse_temperature(model: nn.Module, value: float) -> int:
    """Set the temperature of every KW attention in ``model`` (the authors' ``net_update_temperature``); returns how
    many were set.
    """
    value = check_warehouse_temperature(value)
    attentions = [m for m in model.modules() if isinstance(m, WarehouseAttention)]
    with torch.no_grad():
        for attention in attentions:
            attention.temperature.fill_(value)
    return len(attentions)


class KWTemperatureSchedule:
    """Anneals the KW temperature of ``model``: t = end + (start - end) * (total - i) / total, clipped at ``end``,
    where i counts steps and total = ``epochs`` * ``steps_per_epoch`` (the authors' ``get_temperature``: 1 -> 0
    over their ``temp_epoch``, stepped every iteration). Applied at construction (step 0, t = start); call
    :meth:`step` before each training iteration (``steps_per_epoch`` = iterations per epoch) or once per epoch
    (``steps_per_epoch=1``). Its :meth:`state_dict` resumes it; the temperatures themselves are buffers in the
    model's state_dict.

    Examples:
        >>> schedule = KWTemperatureSchedule(torch.nn.Sequential(), epochs=2, steps_per_epoch=4)
        >>> [round(schedule.step(), 3) for _ in range(3)]
        [0.875, 0.75, 0.625]
    """

    def __init__(
        self, model: nn.Module, start: float = 1.0, end: float = 0.0, epochs: int = 10, steps_per_epoch: int = 1
    ) -> None:
        self.start, self.end = check_warehouse_temperature(start), check_warehouse_temperature(end)
        if self.start < self.end:
            raise ValueError(f"start ({start}) must be >= end ({end}): the temperature anneals downwards")
        self.model, self.epochs = model, check_int(epochs, "epochs", 0)
        self.steps_per_epoch = check_int(steps_per_epoch, "steps_per_epoch")
        self.iteration = 0
        self.num_layers = set_warehouse_temperature(model, self.value(0))

    def value(self, iteration: int) -> float:
        """The temperature after ``iteration`` steps."""
        total = self.epochs * self.steps_per_epoch
        return self.end + max(0.0, (self.start - self.end) * (total - iteration) / max(1.0, total))

    def step(self) -> float:
        """Advance one step, apply and return the new temperature."""
        self.iteration += 1
        value = self.value(self.iteration)
        set_warehouse_temperature(self.model, value)
        return value

    def state_dict(self) -> dict[str, int]:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.iteration = int(state["iteration"])
        set_warehouse_temperature(self.model, self.value(self.iteration))
