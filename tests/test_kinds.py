"""Every consumer reads the one registry of layer kinds (freqdyn.kinds)."""
import pytest
import torch
import torch.nn as nn

from freqdyn import convert
from freqdyn.cli import main
from freqdyn.kinds import CONV_KINDS, KINDS
from freqdyn.profile import FREQDYN_LAYERS
from freqdyn.tools.overhead import PAPER_SETTINGS


@pytest.mark.parametrize("name", list(KINDS))
def test_every_kind_converts_its_source_and_is_profiled(name):
    kind = KINDS[name]
    source = nn.Linear(32, 24) if kind.source is nn.Linear else nn.Conv2d(32, 24, 3, padding=1)
    model = nn.Sequential(source)
    report = convert(model, name)
    assert report.replaced == ["0"] and isinstance(report.model[0], kind.layer)
    x = torch.randn(2, 32) if kind.source is nn.Linear else torch.randn(2, 32, 6, 6)
    torch.testing.assert_close(report.model(x), source(x), rtol=1e-4, atol=1e-5)  # neutral at conversion
    assert issubclass(kind.layer, FREQDYN_LAYERS)


def test_every_kind_is_registered_with_mmengine():
    pytest.importorskip("mmengine")
    from mmengine.registry import MODELS

    from freqdyn.integrations import mmengine as integration

    integration.register()
    for kind in KINDS.values():
        assert MODELS.get(kind.layer.__name__) is kind.layer


def test_every_conv_kind_is_a_cli_target_and_in_the_overhead_table(capsys):
    for name in CONV_KINDS:
        with pytest.raises(SystemExit) as exit_info:
            main(["profile", "--to", name, "--help"])
        assert exit_info.value.code == 0
    assert {s.target for s in PAPER_SETTINGS if s.target} == set(CONV_KINDS)


def test_yolo_rows_come_from_the_registry():
    pytest.importorskip("ultralytics")
    from freqdyn.integrations.ultralytics import ROWS

    assert {KINDS[n].yolo_row for n in CONV_KINDS} <= set(ROWS)
