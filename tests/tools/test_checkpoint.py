"""Checkpoint conversion: a plain network's file becomes one that loads strictly into the converted network."""

import pytest
import torch

from freqdyn import convert
from freqdyn.checkpoint import convert_checkpoint

torchvision = pytest.importorskip("torchvision")


@pytest.mark.parametrize(
    "to,options", [("fdconv", dict(kernel_num=8)), ("dyconv", dict(num_experts=2)), ("odconv", dict(num_experts=2))]
)
def test_converted_checkpoint_loads_strictly_and_computes_the_plain_network(to, options):
    torch.manual_seed(0)
    plain = torchvision.models.resnet18().eval()
    state, report = convert_checkpoint(plain.state_dict(), to, exclude=r"downsample", **options)
    built = torchvision.models.resnet18()
    built_report = convert(built, to, exclude=r"downsample", **options)
    assert sorted(report.converted) == sorted(built_report.replaced)
    assert "conv1" in report.skipped if to == "fdconv" else "conv1" in report.converted  # FDConv gating: 7x7
    built.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(built.eval()(x), plain(x), rtol=1e-4, atol=1e-4)


def test_gating_follows_the_layer_not_the_authors_threshold():
    # the authors' converter skips min(O, I) < 32; the layer is dynamic above 16 channels
    conv = torch.nn.Conv2d(24, 24, 3)
    state, report = convert_checkpoint(
        {"c.weight": conv.weight.detach(), "c.bias": conv.bias.detach()}, "fdconv", kernel_num=8
    )
    assert report.converted == ["c"] and "c.dft_weight" in state and "c.weight" not in state
