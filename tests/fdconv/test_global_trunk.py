"""KSM-Global's trunk and heads as one autograd Function (``layers/fdconv/global_trunk.py``): its backward against
finite differences, and its outputs and BatchNorm state against the modules' own path (taken when a hook is on)."""

import copy

import pytest
import torch

from freqdyn.layers.fdconv.kernel_spatial_modulation import KernelSpatialModulationGlobal
from helpers import gradcheck_module, perturb_

CASES = {
    "train": dict(mode="train", batch=3),
    "eval": dict(mode="eval", batch=3),
    "frozen": dict(mode="train", batch=3, norm="frozen"),
    "batch-of-one": dict(mode="train", batch=1),
    "temperature": dict(mode="train", batch=3, temp=2.0, kernel_temp=2.0),
    "no-kernel-head": dict(mode="train", batch=3, num_kernels=1),
    "1x1": dict(mode="train", batch=3, kernel_size=(1, 1)),
}


def _trunk(case: dict) -> KernelSpatialModulationGlobal:
    options = {k: v for k, v in case.items() if k not in ("mode", "batch", "kernel_size")}
    options.setdefault("num_kernels", 4)
    trunk = KernelSpatialModulationGlobal(
        6, 5, case.get("kernel_size", (3, 3)), 1, reduction=0.5, min_hidden=3, dtype=torch.float64, **options
    )
    trunk = perturb_(trunk, seed=3)
    with torch.no_grad():  # running statistics away from (0, 1)
        trunk.bn.running_mean.uniform_(-0.5, 0.5)
        trunk.bn.running_var.uniform_(0.5, 2.0)
    return trunk.train(case["mode"] == "train")


def _outputs(trunk: KernelSpatialModulationGlobal, pooled: torch.Tensor) -> list[torch.Tensor]:
    att = trunk(pooled)
    return [t for t in (att.channel, att.filter, att.spatial, att.kernel) if t is not None]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_gradients_match_finite_differences(case):
    trunk = _trunk(CASES[case])
    pooled = torch.randn(CASES[case]["batch"], 6, dtype=torch.float64)
    assert trunk._takes_trunk_function()

    class Joined(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = trunk

        def forward(self, x):
            return torch.cat(_outputs(self.trunk, x), dim=1)

    assert gradcheck_module(Joined(), pooled)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_outputs_and_running_statistics_match_the_modules(case):
    fused = _trunk(CASES[case])
    plain = copy.deepcopy(fused)
    plain.fc.register_forward_hook(lambda *args: None)  # a hook: the modules run one by one
    assert not plain._takes_trunk_function()
    for _ in range(3):
        pooled = torch.randn(CASES[case]["batch"], 6, dtype=torch.float64)
        for got, expected in zip(_outputs(fused, pooled), _outputs(plain, pooled), strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused.state_dict(), plain.state_dict(), rtol=1e-12, atol=1e-12)


def test_a_non_finite_batch_leaves_the_running_statistics():
    trunk = _trunk(CASES["train"])
    before = copy.deepcopy(trunk.bn.state_dict())
    trunk(torch.full((3, 6), float("nan"), dtype=torch.float64))
    after = trunk.bn.state_dict()
    torch.testing.assert_close(after["running_mean"], before["running_mean"])
    torch.testing.assert_close(after["running_var"], before["running_var"])
