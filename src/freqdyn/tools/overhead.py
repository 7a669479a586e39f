"""The FDConv paper's parameter-overhead comparison on ResNet-50 (Table 1), reproduced by conversion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ..convert import convert
from ..targets import TARGETS

BOTTLENECK_CONVS = r"(^|\.)layer\d\.\d+\.conv\d$"  # also inside detectors (backbone.body.layer1.0.conv1)


@dataclass(frozen=True)
class OverheadSetting:
    """One row of the table: a conversion of ResNet-50 and the overhead the paper publishes for it."""

    label: str
    target: str  # a :func:`freqdyn.convert` target
    include: str | None
    kwargs: dict
    paper_delta: float


# Which convs each method replaces: FDConv and ODConv the 1x1/3x3/1x1 convs of every bottleneck, DY-Conv
# every conv of the four stages (downsample shortcuts included), CondConv the bottleneck convs of the last
# stage, KW its authors' kw4x_resnet50 layout (every stage-sharing conv but layer1's first 1x1 and shortcut).
# With these sets the measured overheads land within 0.1 % of the published ones (FDConv's within 1.3 %).
def _paper_setting(target: str, include: str, paper_delta: float) -> OverheadSetting:
    entry = TARGETS[target]
    return OverheadSetting(entry.paper_label, target, include, entry.paper, paper_delta)


PAPER_SETTINGS: tuple[OverheadSetting, ...] = (
    _paper_setting("condconv", r"^layer4\.\d+\.conv\d$", 90.0e6),
    _paper_setting("dyconv", r"^layer\d\.", 75.3e6),
    _paper_setting("odconv", BOTTLENECK_CONVS, 65.1e6),
    OverheadSetting("KW (4x)", "kw", None, {"cell_num_ratio": 4}, 76.5e6),  # the authors' kw4x_resnet50 layout
    _paper_setting("fdconv", BOTTLENECK_CONVS, 3.6e6),
)


@dataclass(frozen=True)
class OverheadRow:
    """One row of the paper's overhead table: parameters added (measured) against the paper's, in millions."""

    label: str
    measured: int
    paper: float
    replaced: int

    @property
    def relative_error(self) -> float:
        return (self.measured - self.paper) / self.paper


def resnet50() -> nn.Module:
    """torchvision's ResNet-50 (randomly initialised), or an ``ImportError`` that names the extra to install."""
    try:
        import torchvision
    except ImportError as err:
        raise ImportError("param_overhead() builds torchvision's ResNet-50: pip install 'freqdyn[vision]'") from err
    return torchvision.models.resnet50()


def param_overhead(
    settings: tuple[OverheadSetting, ...] = PAPER_SETTINGS, model_factory: Callable[[], nn.Module] = resnet50
) -> list[OverheadRow]:
    """Convert a fresh ``model_factory()`` per setting and measure the parameter overhead of each."""
    rows = []
    for setting in settings:
        report = convert(model_factory(), setting.target, include=setting.include, **setting.kwargs)
        rows.append(OverheadRow(setting.label, report.param_delta, setting.paper_delta, len(report.replaced)))
    return rows


def format_overhead(rows: list[OverheadRow]) -> str:
    """A text table: method, convs replaced, measured overhead, published overhead, relative difference."""
    lines = [f"{'method':<16}{'convs':>6}{'measured':>12}{'paper':>10}{'diff':>8}"]
    for row in rows:
        lines.append(
            f"{row.label:<16}{row.replaced:>6}{row.measured / 1e6:>+11.3f}M{row.paper / 1e6:>+9.1f}M"
            f"{row.relative_error:>+8.2%}"
        )
    return "\n".join(lines)
