"""Pickles made before the tree moved (tests/pickles, commit 7a37871) still load and compute what they computed."""

import pickletools
import zipfile
from pathlib import Path

import pytest
import torch

from helpers import PICKLES


def pickled_globals(path: Path) -> set[tuple[str, str]]:
    """(module, name) of every class or function a torch.save zip file pickles."""
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.add(tuple(arg.split(" ", 1)))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            found.add((strings[-2], strings[-1]))
    return found


def test_the_layer_pickle_names_the_old_flat_paths():
    modules = {module for module, _ in pickled_globals(PICKLES / "layers.pt") if module.startswith("freqdyn")}
    assert len(modules) == 20 and "freqdyn.layers.frequency_band_modulation" in modules


def test_a_model_pickled_at_the_old_tree_loads_and_computes_the_same():
    saved = torch.load(PICKLES / "layers.pt", weights_only=False)
    model = saved["model"]
    assert saved["commit"] == "7a37871"
    with torch.no_grad():
        for name, args in saved["inputs"].items():
            out = model[name.replace("-", "_")](*args)
            out = [t for t in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(t, torch.Tensor)]
            for got, expected in zip(out, saved["outputs"][name], strict=True):
                # float rounding of the output's scale (the thread count changes the summation order)
                tolerance = 3e-5 * expected.abs().max().item() + 1e-6
                assert (got - expected).abs().max().item() <= tolerance, name
    # a loaded model trains on: state_dict round trip into a fresh build of the new tree
    fresh = type(model["fdconv"])(24, 32, 3, padding=1, kernel_num=8)
    fresh.load_state_dict(model["fdconv"].state_dict(), strict=True)


@pytest.mark.slow
def test_an_old_ultralytics_last_pt_loads_and_predicts():
    ultralytics = pytest.importorskip("ultralytics")
    modules = {module for module, _ in pickled_globals(PICKLES / "yolo_last.pt")}
    assert "freqdyn.integrations.ultralytics" in modules
    io = torch.load(PICKLES / "yolo_last_io.pt")
    model = ultralytics.YOLO(str(PICKLES / "yolo_last.pt")).model.float().eval()
    with torch.no_grad():
        torch.testing.assert_close(model(io["input"])[0], io["output"], rtol=1e-4, atol=1e-4)
