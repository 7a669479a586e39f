"""Attention submodules run as modules: their forward hooks fire, and pruning or parametrising one of them trains.

The reference for a pruned head is the same layer with the pruned entries of that head zeroed by hand (no hooks,
so the layer runs its fused path): an independent computation of what the mask must do.
"""

import copy

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize, prune

from freqdyn import CondConv2d, DynamicConv2d, FDConv, FDLinear, FDLinearQwen, ODConv2d
from helpers import perturb_

FDCONV_HEADS = [
    "KSM_Global.fc",
    "KSM_Global.channel_fc",
    "KSM_Global.filter_fc",
    "KSM_Global.spatial_fc",
    "KSM_Global.kernel_fc",
    "KSM_Local.norm",
    "KSM_Local.conv",
    "FBM.freq_weight_conv_list.0",
    "FBM.freq_weight_conv_list.1",
    "FBM.freq_weight_conv_list.2",
]
CASES = {
    "fdconv": (lambda: FDConv(24, 32, 3, padding=1, kernel_num=4), (2, 24, 9, 9), FDCONV_HEADS),
    "fdconv_grouped_fbm": (
        lambda: FDConv(24, 32, 3, padding=1, kernel_num=4, fbm_spatial_group=3),
        (2, 24, 9, 9),
        ["FBM.freq_weight_conv_list.0", "FBM.freq_weight_conv_list.2"],
    ),
    "fdlinear": (
        lambda: FDLinear(24, 40, kernel_num=4),
        (2, 5, 24),
        [
            "KSM_Global.fc",
            "KSM_Global.channel_fc",
            "KSM_Global.filter_fc",
            "KSM_Global.kernel_fc",
            "KSM_Local.norm",
            "KSM_Local.conv",
        ],
    ),
    "fdlinear_qwen": (
        lambda: FDLinearQwen(24, 40, use_ksm_local=True),
        (2, 5, 24),
        [
            "KSM_Global.fc",
            "KSM_Global.norm",
            "KSM_Global.channel_fc",
            "KSM_Global.filter_fc",
            "KSM_Global.kernel_fc",
            "local_conv",
        ],
    ),
    "odconv": (
        lambda: ODConv2d(24, 32, 3, padding=1),
        (2, 24, 9, 9),
        ["attention.fc", "attention.channel_fc", "attention.filter_fc", "attention.spatial_fc", "attention.kernel_fc"],
    ),
    "condconv": (lambda: CondConv2d(24, 32, 3, padding=1), (2, 24, 9, 9), ["attention.routing"]),
    "dyconv": (lambda: DynamicConv2d(24, 32, 3, padding=1), (2, 24, 9, 9), ["attention.fc1", "attention.fc2"]),
}
PAIRS = [(case, name) for case, (_, _, names) in CASES.items() for name in names]


def build(case: str) -> tuple[nn.Module, torch.Tensor]:
    make, shape, _ = CASES[case]
    layer = perturb_(make(), scale=0.3).train()
    return layer, torch.randn(shape)


@pytest.mark.parametrize("case", list(CASES))
def test_forward_hooks_fire_once_per_training_forward(case):
    layer, x = build(case)
    calls = dict.fromkeys(CASES[case][2], 0)
    for name in calls:

        def hook(module, args, out, name=name):
            calls[name] += 1

        layer.get_submodule(name).register_forward_hook(hook)
    layer(x).square().mean().backward()
    assert calls == dict.fromkeys(calls, 1)


@pytest.mark.parametrize(("case", "name"), PAIRS)
def test_pruned_head_computes_its_mask_and_trains(case, name):
    layer, x = build(case)
    reference = copy.deepcopy(layer)
    prune.l1_unstructured(layer.get_submodule(name), "weight", 0.5)
    mask = layer.get_submodule(name).weight_mask
    with torch.no_grad():
        reference.get_submodule(name).weight.mul_(mask)
    torch.manual_seed(0)
    expected = reference(x)
    torch.manual_seed(0)
    # the hooked layer runs its attention modules one by one, the reference FDConv its fused trunk: float32 rounding
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    opt = torch.optim.SGD(layer.parameters(), lr=0.01)
    for _ in range(2):  # the second step failed when the pruned weight was read without its pre-hook
        opt.zero_grad()
        layer(x).square().mean().backward()
        opt.step()
    assert (layer.get_submodule(name).weight[mask == 0] == 0).all()


class _Scale(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * 0.5


@pytest.mark.parametrize(
    ("case", "name"),
    [
        ("fdconv", "KSM_Global.channel_fc"),
        ("fdconv", "KSM_Local.conv"),
        ("fdconv", "FBM.freq_weight_conv_list.1"),
        ("odconv", "attention.fc"),
        ("condconv", "attention.routing"),
    ],
)
def test_parametrized_head_computes_its_parametrization(case, name):
    layer, x = build(case)
    reference = copy.deepcopy(layer)
    parametrize.register_parametrization(layer.get_submodule(name), "weight", _Scale())
    with torch.no_grad():
        reference.get_submodule(name).weight.mul_(0.5)
    torch.testing.assert_close(layer(x), reference(x), rtol=1e-5, atol=1e-6)
    layer(x).square().mean().backward()
    assert layer.get_submodule(name).parametrizations.weight.original.grad is not None
