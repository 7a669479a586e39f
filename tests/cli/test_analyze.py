"""``freqdyn analyze``: random layers, a user's network and checkpoint (FDConv, KW), foreign checkpoints."""

import pytest
import torch

from freqdyn.analysis import attention_spread
from freqdyn.analysis import photo as photo_of
from freqdyn.cli import main
from freqdyn.layers.kernel_warehouse import set_warehouse_temperature


def test_cli_analyze_writes_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["analyze", "--out", str(tmp_path), "--size", "33", "--kernel-num", "8"]) == 0
    assert (tmp_path / "frequency_responses.png").stat().st_size > 0 and (tmp_path / "erf.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "FDConv (K=8)    weight-matrix spectrum 0.000" in out
    assert "KW (4x)         weight-matrix spectrum 0.7" in out and "kernel spectrum flat (1x1)" in out


def _analyze_resnet18_checkpoint(tmp_path, capsys, path, size: str, to: str, *options: str) -> str:
    """``freqdyn analyze`` of a ResNet-18 converted with ``--to`` and loaded from ``path``: its printed report."""
    command = ["analyze", "--out", str(tmp_path), "--size", size, "--model", "resnet18", "--to", to, *options]
    assert main([*command, "--checkpoint", str(path), "--plot-layers", "2"]) == 0
    return capsys.readouterr().out


@pytest.mark.slow  # ResNet-50 spectra, attention spread and ERF
def test_cli_analyze_a_users_model_and_checkpoint(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    torchvision = pytest.importorskip("torchvision")
    from freqdyn import convert

    trained = torchvision.models.resnet18()
    convert(trained, "fdconv", include=r"layer\d\.\d+\.conv[123]$", kernel_num=8)
    path = tmp_path / "trained.pth"
    torch.save({"state_dict": trained.state_dict()}, path)
    out = _analyze_resnet18_checkpoint(tmp_path, capsys, path, "64", "fdconv", "--kernel-num", "8")
    assert "0 missing, 0 unexpected keys" in out and "16 dynamic layers" in out
    assert out.count("weight-matrix spectrum 0.000") == 16
    assert (tmp_path / "frequency_responses.png").stat().st_size > 0 and (tmp_path / "erf.png").stat().st_size > 0
    assert main(["analyze", "--out", str(tmp_path), "--model", "resnet18"]) == 2  # nothing dynamic to analyse


def test_cli_analyze_a_kw_network_and_its_checkpoint(tmp_path, capsys):
    """A KW ResNet-18 trained past its temperature schedule (t = 0; random attentions stand in for trained ones):
    its checkpoint, in the authors' key names, loads whole and its own-cell shares are the trained model's."""
    pytest.importorskip("matplotlib")
    torchvision = pytest.importorskip("torchvision")
    from freqdyn import convert

    torch.manual_seed(0)
    trained = torchvision.models.resnet18()
    convert(trained, "kw", cell_num_ratio=2)
    set_warehouse_temperature(trained, 0.0)
    path = tmp_path / "kw.pth"
    torch.save(trained.state_dict(), path)
    expected = attention_spread(trained.eval(), photo_of(32))  # the CLI's photo at --size 32
    out = _analyze_resnet18_checkpoint(tmp_path, capsys, path, "32", "kw", "--cell-num-ratio", "2")
    assert "0 missing, 0 unexpected keys" in out and "19 dynamic layers" in out
    assert out.count("KWConv2d       weight-matrix spectrum") == 19 and out.count("kernel spectrum flat (1x1)") == 19
    shares = {line.split()[0]: float(line.split()[2]) for line in out.splitlines() if " own_cell " in line}
    assert shares == {name: pytest.approx(v["own_cell"], abs=1e-3) for name, v in expected.items()}
    assert all(v < 0.5 for v in shares.values())  # mixed warehouses, not the one-hot start


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
    assert (
        main(
            [
                "analyze",
                "--out",
                str(tmp_path),
                "--size",
                "48",
                "--model",
                "resnet18",
                "--to",
                "fdconv",
                "--kernel-num",
                "8",
                "--checkpoint",
                str(path),
                "--plot-layers",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "(the keys under 'backbone.'): " in out and "2 missing, 0 unexpected keys" in out  # fc skipped: missing
    assert "skipped 2 tensor(s) whose shape differs (another class count?): fc.weight: (10, 512)" in out
    assert "Effective receptive field of resnet18's last feature map" in out  # the model, not its last layer
    spread = {line.split()[0]: line for line in out.splitlines() if "kernel " in line and "channel " in line}
    assert "kernel 0.000" not in spread["layer1.0.conv1"] and "channel 0.000" in spread["layer1.1.conv1"]
