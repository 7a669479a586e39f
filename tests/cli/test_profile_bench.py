"""``freqdyn profile``, ``freqdyn bench`` and ``freqdyn --version``."""

import pytest

from freqdyn.cli import main


def test_cli_profile(capsys):
    pytest.importorskip("torchvision")
    assert main(["profile", "--model", "resnet18", "--to", "dyconv", "--size", "64"]) == 0
    assert "GFLOPs" in capsys.readouterr().out


def test_cli_bench_times_every_layer(capsys):
    assert main(["bench", "--batch", "1", "--channels", "32", "--size", "8", "--kernel-num", "4"]) == 0
    out = capsys.readouterr()
    for name in ("nn.Conv2d", "DY-Conv (4x)", "CondConv (8x)", "ODConv (4x)", "FDConv (K=4)"):
        assert name in out.out
    assert "\r" not in out.err  # no progress-bar frames when stderr is not a terminal (piped logs)


def test_cli_bench_warns_when_its_rounds_disagree(capsys, monkeypatch):
    import freqdyn.cli as cli

    def drifting(fns, rounds):  # a host whose load changed mid-run: one layer's rounds differ by 3x
        return {name: [1.0, 1.5, 3.0] if name == "ODConv (4x)" else [1.0, 1.1, 1.2] for name in fns}

    monkeypatch.setattr(cli, "interleaved_times_ms", drifting)
    assert main(["bench", "--batch", "1", "--channels", "32", "--size", "8", "--kernel-num", "4"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "ODConv (4x)" in warnings[0] and "3.0x" in warnings[0]


def test_cli_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("freqdyn ")


@pytest.mark.parametrize("name", ["fasterrcnn_mobilenet_v3_large_320_fpn", "mobilenetv3_small_050"])
def test_cli_profile_takes_detection_and_timm_models(name, capsys):
    pytest.importorskip("torchvision")
    pytest.importorskip("timm")
    assert main(["profile", "--model", name, "--to", "dyconv", "--size", "64"]) == 0
    assert "GFLOPs" in capsys.readouterr().out


def test_cli_profile_unknown_model_is_a_clear_error(capsys):
    assert main(["profile", "--model", "no_such_net"]) == 2
    assert "unknown model 'no_such_net'" in capsys.readouterr().err


def test_cli_profile_says_when_nothing_was_converted(capsys):
    pytest.importorskip("torchvision")
    assert main(["profile", "--model", "squeezenet1_0", "--to", "fdlinear", "--size", "64"]) == 1  # no nn.Linear
    out = capsys.readouterr()
    assert "no layer of squeezenet1_0 was converted" in out.err and "2 x multiply-accumulates" in out.out
