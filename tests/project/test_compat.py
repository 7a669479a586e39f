"""The compatibility policy (CHANGELOG.md): every shim that loads files of earlier freqdyn versions lives in
``freqdyn.layers._compat`` with the release in which it goes, and fails here once the version reaches that release."""

import pytest

from freqdyn.layers import _compat
from freqdyn.version import __version__
from helpers import ROOT


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


def test_every_shim_is_listed_with_its_release():
    functions = {
        name
        for name, value in vars(_compat).items()
        if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == _compat.__name__
    }
    assert functions == set(_compat.SHIMS)


@pytest.mark.parametrize("name", sorted(_compat.SHIMS))
def test_no_shim_outlives_its_release(name):
    what, release = _compat.SHIMS[name]
    assert _release(__version__) < _release(release), f"{name} ({what}) goes in {release}: remove it"


def test_the_changelog_has_this_version_and_the_policy():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {__version__}" in text and "freqdyn/layers/_compat.py" in text


def test_an_older_checkpoints_temperature_bits_load_as_the_temperature():
    import struct

    import torch

    from freqdyn import DynamicConv2d

    layer = DynamicConv2d(8, 8, 3, num_experts=3)
    state = layer.state_dict()
    del state["attention.temperature"]  # an older checkpoint held the float64's bit pattern instead
    state["temperature_bits"] = torch.tensor(struct.unpack("<q", struct.pack("<d", 7.25))[0])
    layer.load_state_dict(state)
    assert layer.temperature == 7.25


def test_an_fdconv_pickled_before_kernel_shape_was_data_computes_the_same():
    import pickle

    import torch

    from freqdyn import FDConv, FDLinear

    for layer, x in (
        (FDConv(8, 16, 3, padding=1, groups=2, kernel_num=4), torch.randn(2, 8, 5, 5)),
        (FDLinear(8, 12, kernel_num=4), torch.randn(2, 3, 8)),
    ):
        layer.eval()
        old = layer.__getstate__()
        old = {k: v for k, v in old.items() if k != "kernel_shape"}
        restored = type(layer).__new__(type(layer))
        restored.__setstate__(pickle.loads(pickle.dumps(old)))
        assert restored.kernel_shape == layer.kernel_shape
        torch.testing.assert_close(restored(x), layer(x))
