import pytest
import torch
import torch.nn as nn

from freqdyn import MRFA, CondConv2d, DynamicConv2d, FDConv, ODConv2d
from freqdyn.analysis import (
    effective_receptive_field,
    erf_radius,
    frequency_responses,
    kernel_bank,
    response_similarity,
)
from freqdyn.cli import main


@pytest.mark.parametrize("cls", [DynamicConv2d, CondConv2d, ODConv2d])
def test_kernel_bank_family_responses_look_alike(cls):
    layer = cls.from_conv(nn.Conv2d(32, 32, 3, padding=1), num_experts=4)
    bank = kernel_bank(layer)
    assert bank.shape == (4, 32, 32, 3, 3)
    assert response_similarity(frequency_responses(bank, "kernel")) > 0.95


def test_fdconv_groups_are_disjoint_in_its_fourier_domain():
    layer = FDConv(32, 32, 3, padding=1, kernel_num=6)
    bank = kernel_bank(layer)
    assert bank.shape == (6, 32, 32, 3, 3)
    responses = frequency_responses(bank, "matrix")
    assert response_similarity(responses) < 1e-6
    support = (responses > 1e-4 * responses.amax()).double()  # every spectrum coefficient belongs to exactly one group
    torch.testing.assert_close(support.sum(0), torch.ones_like(support[0]))


def test_similarity_and_errors():
    same = torch.rand(1, 5, 5).expand(3, 5, 5)
    assert response_similarity(same) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no kernel bank"):
        kernel_bank(nn.Conv2d(3, 3, 3))
    with pytest.raises(ValueError, match="domain"):
        frequency_responses(torch.rand(2, 1, 1, 3, 3), "nope")


def test_erf_support_matches_the_receptive_field():
    x = torch.randn(2, 8, 41, 41)
    erf = effective_receptive_field(MRFA(8), x)
    support = (erf > 0).nonzero()
    assert (support - 20).abs().max() == 12 and erf.max() == 1.0
    conv_erf = effective_receptive_field(nn.Conv2d(8, 8, 3, padding=1), x)
    assert erf_radius(conv_erf, mass=1.0) == 1


def test_cli_analyze_writes_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["analyze", "--out", str(tmp_path), "--size", "33", "--kernel-num", "8"]) == 0
    assert (tmp_path / "frequency_responses.png").stat().st_size > 0 and (tmp_path / "erf.png").stat().st_size > 0
    assert "FDConv (K=8)    weight-matrix spectrum 0.000" in capsys.readouterr().out


@pytest.mark.slow  # ResNet-50 spectra, attention spread and ERF
def test_cli_analyze_a_users_model_and_checkpoint(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    torchvision = pytest.importorskip("torchvision")
    from freqdyn import convert

    trained = torchvision.models.resnet18()
    convert(trained, "fdconv", include=r"layer\d\.\d+\.conv[123]$", kernel_num=8)
    path = tmp_path / "trained.pth"
    torch.save({"state_dict": trained.state_dict()}, path)
    assert main(["analyze", "--out", str(tmp_path), "--size", "64", "--model", "resnet18", "--to", "fdconv",
                 "--kernel-num", "8", "--checkpoint", str(path), "--plot-layers", "2"]) == 0
    out = capsys.readouterr().out
    assert "0 missing, 0 unexpected keys" in out and "16 dynamic layers" in out
    assert out.count("weight-matrix spectrum 0.000") == 16
    assert (tmp_path / "frequency_responses.png").stat().st_size > 0 and (tmp_path / "erf.png").stat().st_size > 0
    assert main(["analyze", "--out", str(tmp_path), "--model", "resnet18"]) == 2  # nothing dynamic to analyse


@pytest.mark.slow
def test_cli_analyze_foreign_checkpoints_and_what_training_changed(tmp_path, capsys):
    """A detector's backbone checkpoint (mmdet: 'state_dict', 'backbone.' keys) with another class count loads
    what fits and says what it skipped; the attention spread tells a trained layer (heads moved) from a fresh one."""
    pytest.importorskip("matplotlib")
    torchvision = pytest.importorskip("torchvision")
    from freqdyn import convert

    torch.manual_seed(0)
    trained = torchvision.models.resnet18(num_classes=10)
    convert(trained, "fdconv", include=r"layer\d\.\d+\.conv[123]$", kernel_num=8)
    with torch.no_grad():  # "training": the first layer's attention heads move away from neutral
        for name, p in trained.layer1[0].conv1.named_parameters():
            if "KSM_Global" in name and ("_fc." in name or name.endswith("fc.weight")):
                p.normal_(0, 0.5)
    state = {f"backbone.{k}": v for k, v in trained.state_dict().items()}
    state["neck.lateral.weight"] = torch.zeros(3)
    path = tmp_path / "detector.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 12}}, path)
    assert main(["analyze", "--out", str(tmp_path), "--size", "48", "--model", "resnet18", "--to", "fdconv",
                 "--kernel-num", "8", "--checkpoint", str(path), "--plot-layers", "1"]) == 0
    out = capsys.readouterr().out
    assert "(the keys under 'backbone.'): " in out and "2 missing, 0 unexpected keys" in out  # fc skipped: missing
    assert "skipped 2 tensor(s) whose shape differs (another class count?): fc.weight: (10, 512)" in out
    assert "Effective receptive field of resnet18's last feature map" in out  # the model, not its last layer
    spread = {line.split()[0]: line for line in out.splitlines() if "kernel " in line and "channel " in line}
    assert "kernel 0.000" not in spread["layer1.0.conv1"] and "channel 0.000" in spread["layer1.1.conv1"]


def test_attention_spread_is_zero_for_a_converted_network():
    from freqdyn import DynamicConv2d, FDConv, FDLinear
    from freqdyn.analysis import attention_spread

    model = nn.Sequential(FDConv(24, 32, 3, kernel_num=4), DynamicConv2d(32, 32, 3, num_experts=3))
    spread = attention_spread(model, torch.randn(2, 24, 12, 12))
    assert set(spread) == {"0", "1"} and all(v == 0.0 for v in spread["0"].values())  # FDConv: exactly neutral
    assert spread["1"]["kernel"] < 0.05  # DY-Conv's random attention at temperature 30: nearly uniform
    linear = FDLinear(16, 24, kernel_num=4)
    assert attention_spread(nn.Sequential(linear), torch.randn(3, 16))["0"]["kernel"] == 0.0


@pytest.mark.parametrize("plot", ["responses", "erf"])
def test_plots_have_ticks_and_units(plot, tmp_path, monkeypatch):
    """Every panel of the analysis plots has ticks and axis labels with their units (frequency in cycles per
    row / column / pixel, ERF offsets in pixels) and a labelled colour bar."""
    figure = pytest.importorskip("matplotlib.figure")
    from freqdyn import analysis

    saved = []
    monkeypatch.setattr(figure.Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    if plot == "responses":
        responses = analysis.frequency_responses(torch.randn(3, 4, 4, 3, 3), "matrix")
        analysis.plot_frequency_responses({"bank": responses}, tmp_path / "r.png")
    else:
        erf = torch.rand(17, 17)
        analysis.plot_erf({"net": erf / erf.max()}, tmp_path / "e.png")
    panels = [ax for ax in saved[0].axes if ax.images]
    colorbars = [ax for ax in saved[0].axes if not ax.images and ax.get_ylabel()]
    assert panels and colorbars
    for ax in panels:
        assert len(ax.get_xticks()) >= 2 and ("cycles" in ax.get_xlabel() or "pixels" in ax.get_xlabel())
    assert any(len(ax.get_yticks()) >= 2 and ("cycles" in ax.get_ylabel() or "pixels" in ax.get_ylabel())
               for ax in panels)
