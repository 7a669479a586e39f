"""``freqdyn convert-checkpoint``."""

import pytest
import torch

from freqdyn import convert
from freqdyn.cli import main

torchvision = pytest.importorskip("torchvision")


def test_cli_converts_an_mmengine_style_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    plain = torchvision.models.resnet18()
    source, target = tmp_path / "r18.pth", tmp_path / "r18_fdconv.pth"
    torch.save({"meta": {"epoch": 3}, "state_dict": plain.state_dict()}, source)
    assert main(["convert-checkpoint", str(source), str(target), "--exclude", "downsample", "--kernel-num", "8"]) == 0
    assert "converted 16 conv(s)" in capsys.readouterr().out
    saved = torch.load(target, weights_only=True)
    assert saved["meta"] == {"epoch": 3}
    built = torchvision.models.resnet18()
    convert(built, "fdconv", exclude=r"downsample", kernel_num=8)
    built.load_state_dict(saved["state_dict"], strict=True)
