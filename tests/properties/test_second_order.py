"""Second derivatives (a backward with ``create_graph=True``: gradient penalties, double backward) through the
layers' own autograd Functions are exact (finite differences of the gradient, float64), or refused with autograd's
error where a Function's backward cannot be differentiated (CARAFE's): never silently wrong."""

import pytest
import torch
import torch.nn as nn
from helpers import perturb_

from freqdyn import FDConv, FDLinear, FreqFusion, ODConv2d
from freqdyn.layers.fdconv.frequency_band_modulation import FrequencyBandModulation

F64 = torch.float64
CASES = {
    "fdconv-weight": (lambda: FDConv(4, 6, 3, padding=1, kernel_num=3, aggregation="weight", dtype=F64), (2, 4, 5, 6)),
    "fdconv-feature": (lambda: FDConv(4, 6, 3, padding=1, kernel_num=3, aggregation="feature", dtype=F64), (2, 4, 5, 6)),
    "fdconv-kept": (lambda: FDConv(4, 6, 3, padding=1, kernel_num=3, recompute_kernels=False, dtype=F64), (2, 4, 5, 6)),
    "fdconv-1x1": (lambda: FDConv(4, 6, 1, kernel_num=3, dtype=F64), (2, 4, 5, 6)),
    "fdlinear": (lambda: FDLinear(5, 6, kernel_num=3, dtype=F64), (2, 3, 5)),
    "fbm": (lambda: FrequencyBandModulation(4, dtype=F64), (2, 4, 6, 5)),
    "odconv": (lambda: ODConv2d(4, 6, 3, padding=1, num_experts=2, dtype=F64), (2, 4, 5, 6)),
}


def _second_order_check(module: nn.Module, x: torch.Tensor) -> bool:
    names = [n for n, _ in module.named_parameters()]
    params = tuple(p.detach().requires_grad_() for _, p in module.named_parameters())

    def fn(inp, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps, strict=True)), (inp,))

    inputs = (x.requires_grad_(), *params)
    return torch.autograd.gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_second_derivatives_match_finite_differences(case):
    build, shape = CASES[case]
    module = perturb_(build(), seed=6).train()
    assert _second_order_check(module, torch.randn(shape, dtype=F64))


def test_carafe_refuses_a_second_derivative():
    fusion = FreqFusion(4, 8, compressed_channels=8).double()
    hr = torch.randn(1, 4, 8, 8, dtype=F64, requires_grad=True)
    lr = torch.randn(1, 8, 4, 4, dtype=F64)
    (grad,) = torch.autograd.grad(fusion(hr, lr)[1].square().sum(), hr, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.square().sum().backward()
