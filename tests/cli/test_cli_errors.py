"""The command line says what is wrong with the user's files and installs in one line, with a non-zero exit."""

import io
import re

import pytest
import torch
import torch.nn as nn

from freqdyn.cli import main
from freqdyn.tools import models


def _bad_files(folder) -> dict[str, str]:
    buffer = io.BytesIO()
    torch.save({"w": torch.randn(64, 64)}, buffer)
    files = {"truncated": buffer.getvalue()[:2000], "random": bytes(range(256)) * 8, "text": b"not a checkpoint\n"}
    paths = {}
    for name, data in files.items():
        path = folder / f"{name}.pth"
        path.write_bytes(data)
        paths[name] = str(path)
    paths["missing"] = str(folder / "nope.pth")
    paths["folder"] = str(folder)
    return paths


CASES = ["truncated", "random", "text", "missing", "folder"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", ["convert-checkpoint", "analyze"])
def test_an_unreadable_checkpoint_is_one_line_naming_the_file(case, command, tmp_path, capsys):
    path = _bad_files(tmp_path)[case]
    argv = (
        [command, path, str(tmp_path / "out.pth")]
        if command == "convert-checkpoint"
        else [command, "--model", "resnet18", "--to", "dyconv", "--checkpoint", path, "--out", str(tmp_path / "a")]
    )
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and path in err and "Traceback" not in err
    assert "weights_only" not in err  # torch's advice to load unsafely is wrong advice for a corrupt file


def test_a_checkpoint_of_pickled_objects_asks_for_trust(tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save(nn.Conv2d(3, 8, 3), path)
    assert main(["convert-checkpoint", str(path), str(tmp_path / "out.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust-checkpoint" in err


def test_analyze_refuses_a_checkpoint_of_another_architecture(tmp_path, capsys):
    torchvision = pytest.importorskip("torchvision")
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    assert (
        main(
            [
                "analyze",
                "--model",
                "resnet18",
                "--to",
                "dyconv",
                "--checkpoint",
                str(path),
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "does not fit resnet18 -> dyconv" in err and re.search(r"holds \d+ of the model's \d+ keys \(\d+%", err)
    assert not (tmp_path / "a" / "erf.png").exists()


def test_profile_reports_the_size_a_detector_computes(capsys):
    pytest.importorskip("torchvision")
    assert main(["profile", "--model", "fasterrcnn_mobilenet_v3_large_320_fpn", "--to", "none", "--size", "64"]) == 0
    assert "at (1, 3, 320, 320), the size fasterrcnn_mobilenet_v3_large_320_fpn resizes its (1, 3, 64, 64)" in (
        capsys.readouterr().out
    )


def test_torchvision_pairs_follow_torch():
    assert models.paired_torchvision("2.13.0+cpu") == "0.28"
    assert models.paired_torchvision("2.14.1") == "0.29"


def test_a_torchvision_that_does_not_import_is_one_line_naming_the_pair(monkeypatch, capsys):
    pytest.importorskip("torchvision")
    real = models.importlib.import_module

    def broken(name, *args):
        if name == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(name, *args)

    monkeypatch.setattr(models.importlib, "import_module", broken)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err.strip()
    wanted = models.paired_torchvision(torch.__version__)
    assert len(err.splitlines()) == 1 and "torchvision::nms" in err and f"torchvision=={wanted}.*" in err


def test_a_torchvision_built_for_another_torch_is_named(monkeypatch, capsys):
    torchvision = pytest.importorskip("torchvision")
    monkeypatch.setattr(torchvision, "__version__", "0.1.0")
    assert main(["profile", "--model", "resnet18"]) == 2
    assert "torchvision 0.1.0 was built for another torch" in capsys.readouterr().err
