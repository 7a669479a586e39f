"""Every consumer reads the one registry of conversion targets (freqdyn.targets)."""

import pytest
import torch
import torch.nn as nn

from freqdyn import FDConv, convert, gated_fdconv
from freqdyn.cli import main
from freqdyn.layers.catalog import FREQDYN_LAYERS
from freqdyn.targets import CONV_TARGETS, TARGETS
from freqdyn.tools.overhead import PAPER_SETTINGS


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_converts_its_source_and_is_profiled(name):
    target = TARGETS[name]
    source = nn.Linear(32, 24) if target.source is nn.Linear else nn.Conv2d(32, 24, 3, padding=1)
    model = nn.Sequential(source)
    report = convert(model, name)
    assert report.replaced == ["0"] and isinstance(report.model[0], target.layer)
    x = torch.randn(2, 32) if target.source is nn.Linear else torch.randn(2, 32, 6, 6)
    torch.testing.assert_close(report.model(x), source(x), rtol=1e-4, atol=1e-5)  # neutral at conversion
    assert issubclass(target.layer, FREQDYN_LAYERS)


def test_every_target_is_registered_with_mmengine():
    pytest.importorskip("mmengine")
    from mmengine.registry import MODELS

    from freqdyn.integrations import mmengine as integration

    integration.register()
    for target in TARGETS.values():
        expected = gated_fdconv if target.layer is FDConv else target.layer  # the authors' gated FDConv(...)
        assert MODELS.get(target.layer.__name__) is expected


def test_every_conv_target_is_a_cli_target_and_in_the_overhead_table(capsys):
    for name in [*CONV_TARGETS, "kw"]:  # KernelWarehouse converts a whole network
        with pytest.raises(SystemExit) as exit_info:
            main(["profile", "--to", name, "--help"])
        assert exit_info.value.code == 0
    assert {s.target for s in PAPER_SETTINGS} == {*CONV_TARGETS, "kw"}


def test_yolo_rows_come_from_the_registry():
    pytest.importorskip("ultralytics")
    from freqdyn.integrations.ultralytics import ROWS

    assert {TARGETS[n].yolo_row for n in CONV_TARGETS} <= set(ROWS)
