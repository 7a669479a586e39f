"""Second derivatives (a backward with ``create_graph=True``: gradient penalties, double backward) through the
layers' own autograd Functions are exact (finite differences of the gradient, float64), or refused with autograd's
error where a Function's backward cannot be differentiated (CARAFE's): never silently wrong."""

import pytest
import torch
import torch.nn as nn

from freqdyn import FDConv, FDLinear, FreqFusion, ODConv2d
from freqdyn.layers.fdconv import kernel_conv
from freqdyn.layers.fdconv.frequency_band_modulation import FrequencyBandModulation
from helpers import perturb_

F64 = torch.float64
MAP = (2, 4, 5, 6)


def _fdconv(**options) -> FDConv:
    return FDConv(
        4, 6, options.pop("kernel_size", 3), padding=options.pop("padding", 1), kernel_num=3, dtype=F64, **options
    )


CASES = {
    "fdconv-weight": (lambda: _fdconv(aggregation="weight"), MAP),
    "fdconv-feature": (lambda: _fdconv(aggregation="feature"), MAP),
    "fdconv-kept": (lambda: _fdconv(recompute_kernels=False), MAP),
    "fdconv-1x1": (lambda: _fdconv(kernel_size=1), MAP),
    "fdlinear": (lambda: FDLinear(5, 6, kernel_num=3, dtype=F64), (2, 3, 5)),
    "fbm": (lambda: FrequencyBandModulation(4, dtype=F64), (2, 4, 6, 5)),
    "odconv": (lambda: ODConv2d(4, 6, 3, padding=1, num_experts=2, dtype=F64), MAP),
}


def _second_order_check(module: nn.Module, x: torch.Tensor) -> bool:
    names = [n for n, _ in module.named_parameters()]
    params = tuple(p.detach().requires_grad_() for _, p in module.named_parameters())

    def fn(inp, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps, strict=True)), (inp,))

    inputs = (x.requires_grad_(), *params)
    return torch.autograd.gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("rebuild", [False, True], ids=["kept", "rebuilt"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_second_derivatives_match_finite_differences(case, rebuild, monkeypatch):
    if rebuild:  # these small kernels are kept for backward unless the outright allowance is off
        monkeypatch.setattr(kernel_conv, "KEPT_ANYWAY", 0)
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
