"""Typed factory keyword arguments (``device``, ``dtype``) that every layer forwards to its parameters."""
from __future__ import annotations

from typing import TypedDict

import torch


class FactoryKwargs(TypedDict):
    device: torch.device | None
    dtype: torch.dtype | None


def factory_kwargs(device: torch.device | None, dtype: torch.dtype | None) -> FactoryKwargs:
    """``{"device": device, "dtype": dtype}``, typed so that ``**`` into torch factories type-checks."""
    return {"device": device, "dtype": dtype}
