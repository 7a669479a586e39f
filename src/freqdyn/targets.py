"""The targets freqdyn converts ``nn.Conv2d`` / ``nn.Linear`` layers into: the one registry that
:func:`freqdyn.convert`, the CLI, the ultralytics and mmengine integrations, the profiler, the overhead table
and the benchmarks read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from .layers import CondConv2d, DynamicConv2d, FDConv, FDLinear, FDLinearQwen, ODConv2d, gated_from_conv


@dataclass(frozen=True)
class Target:
    """One conversion target.

    Attributes:
        name: the conversion target (``convert(model, name)``, ``--to name``).
        layer: the layer class.
        label: the method's short name in tables.
        source: what it replaces (``nn.Conv2d`` or ``nn.Linear``).
        convert: ``source`` instance (+ layer options) -> layer, with the source's weights.
        paper: the paper's setting (kernel count), used by the overhead table and benchmarks.
        yolo_row: the ultralytics YAML row name built as a stock ``Conv`` and converted, if any.
        yolo: the options YOLO rows use by default.
    """

    name: str
    layer: type[nn.Module]
    label: str
    source: type[nn.Module]
    convert: Callable[..., nn.Module]
    paper: dict[str, Any] = field(default_factory=dict)
    yolo_row: str | None = None
    yolo: dict[str, Any] = field(default_factory=dict)

    @property
    def paper_label(self) -> str:
        """``label`` with the paper's kernel count, e.g. 'FDConv (K=64)', 'DY-Conv (4x)'."""
        if "kernel_num" in self.paper:
            return f"{self.label} (K={self.paper['kernel_num']})"
        return f"{self.label} ({self.paper['num_experts']}x)" if "num_experts" in self.paper else self.label


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            "fdconv", FDConv, "FDConv", nn.Conv2d, gated_from_conv, {"kernel_num": 64}, "FDConv", {"kernel_num": 16}
        ),  # the YOLO re-implementations' setting (the paper's 64 is for ResNet-50)
        Target(
            "dyconv",
            DynamicConv2d,
            "DY-Conv",
            nn.Conv2d,
            DynamicConv2d.from_conv,
            {"num_experts": 4},
            "DynamicConv",
            {"num_experts": 4},
        ),
        Target(
            "condconv",
            CondConv2d,
            "CondConv",
            nn.Conv2d,
            CondConv2d.from_conv,
            {"num_experts": 8},
            "CondConv",
            {"num_experts": 8},
        ),
        Target(
            "odconv",
            ODConv2d,
            "ODConv",
            nn.Conv2d,
            ODConv2d.from_conv,
            {"num_experts": 4},
            "ODConv",
            {"num_experts": 4},
        ),
        Target("fdlinear", FDLinear, "FDLinear", nn.Linear, FDLinear.from_linear, {"kernel_num": 64}),
        Target(
            "fdlinear_qwen", FDLinearQwen, "FDLinear (Qwen)", nn.Linear, FDLinearQwen.from_linear, {"kernel_num": 4}
        ),  # the authors' FDLinear4Qwen module and default
    )
}
CONV_TARGETS: tuple[str, ...] = tuple(name for name, target in TARGETS.items() if target.source is nn.Conv2d)


def paper_layers(conv: nn.Conv2d, kernel_num: int | None = None) -> dict[str, nn.Module]:
    """``conv`` converted into every conv target with its paper's kernel count, by table label.

    ``kernel_num`` overrides FDConv's (its label then shows it).
    """
    layers = {}
    for name in CONV_TARGETS:
        target = TARGETS[name]
        if name == "fdconv" and kernel_num is not None:
            options = {**target.paper, "kernel_num": kernel_num}
            layers[f"{target.label} (K={kernel_num})"] = target.convert(conv, **options)
        else:
            layers[target.paper_label] = target.convert(conv, **target.paper)
    return layers
