"""FDConv's route under ``torch.compile``, run eagerly: the opaque operators ``freqdyn::kernel_conv`` (the kernel
Function's work) and ``freqdyn::fbm_band_modulation`` (FBM's FFTs). Their gradients against finite differences, their
outputs against the eager route, and torch.library.opcheck's checks of schema, fake shapes and strides, and
autograd registration. Dynamo's graph holding them is in ``tests/properties/test_compile.py``."""

import copy

import pytest
import torch

from freqdyn import FDConv, FDLinear, FrequencyBandModulation
from freqdyn.layers.fdconv import conv, fourier_dynamic, frequency_band_modulation, kernel_conv, linear, low_pass
from helpers import gradcheck_module, perturb_

# the modules whose compiled branches make up the route (the operators' own bodies run eagerly, as compiled)
ROUTE = [kernel_conv, fourier_dynamic, conv, linear, low_pass, frequency_band_modulation]
CASES = {
    "default": {},
    "stride-dilation": dict(stride=2, dilation=2, padding=2),
    "1x1": dict(kernel_size=1, padding=0),
    "3x5-same": dict(kernel_size=(3, 5), padding="same"),
    "no-local-tanh": dict(use_ksm_local=False, ksm_act="tanh"),
    "copies": dict(param_ratio=2),
    "fbm": dict(use_fbm_if_k_in=(3,)),
}


@pytest.fixture
def compiled_route(monkeypatch):
    for module in ROUTE:
        monkeypatch.setattr(module, "compiling", lambda: True)


def _calls(monkeypatch, name: str) -> list[tuple]:
    """Record the arguments of every call of ``kernel_conv.<name>``."""
    calls, op = [], getattr(kernel_conv, name)
    monkeypatch.setattr(kernel_conv, name, lambda *args: calls.append(args) or op(*args))
    return calls


def _fdconv(case: str, aggregation: str) -> FDConv:
    options = dict(kernel_size=3, padding=1, kernel_num=3, aggregation=aggregation, use_fbm_if_k_in=())
    options.update(CASES[case])
    return perturb_(FDConv(4, 6, dtype=torch.float64, **options), seed=7)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("aggregation", ["weight", "feature"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_operator_route_matches_eager_and_finite_differences(case, aggregation, memory_format, monkeypatch):
    layer = _fdconv(case, aggregation)
    x = torch.randn(2, 4, 6, 7, dtype=torch.float64).to(memory_format=memory_format)
    want = layer(x)
    with torch.no_grad():
        want_eval = layer.eval()(x)
    for module in ROUTE:
        monkeypatch.setattr(module, "compiling", lambda: True)
    calls = _calls(monkeypatch, "kernel_conv_operator")
    with torch.no_grad():  # compiled inference takes the operator too
        torch.testing.assert_close(layer(x), want_eval, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.train()(x), want, rtol=1e-10, atol=1e-12)
    assert len(calls) == 2
    assert gradcheck_module(layer, x)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("aggregation", ["weight", "feature"])
def test_kernel_operator_passes_opcheck(aggregation, memory_format, compiled_route, monkeypatch):
    layer, op = _fdconv("default", aggregation), kernel_conv.kernel_conv_operator
    calls = _calls(monkeypatch, "kernel_conv_operator")
    layer(torch.randn(2, 4, 6, 7, dtype=torch.float64).to(memory_format=memory_format))
    args = [a.detach().requires_grad_(a.is_floating_point()) if isinstance(a, torch.Tensor) else a for a in calls[0]]
    torch.library.opcheck(op, args)


def test_kernel_operator_in_half_precision_returns_the_conv_dtype(compiled_route):
    layer = perturb_(FDConv(4, 6, 3, padding=1, kernel_num=3), seed=3).to(torch.bfloat16)
    x = torch.randn(2, 4, 6, 7, dtype=torch.bfloat16, requires_grad=True)
    y = layer(x)
    y.float().square().sum().backward()
    assert y.dtype == torch.bfloat16 and layer.dft_weight.grad.dtype == torch.bfloat16
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("options", [{}, dict(use_ksm_local=False, param_ratio=2)], ids=["default", "copies"])
def test_linear_operator_route_matches_finite_differences(options, compiled_route, monkeypatch):
    layer = perturb_(FDLinear(5, 4, kernel_num=3, dtype=torch.float64, **options), seed=2)
    calls = _calls(monkeypatch, "kernel_conv_operator")
    assert gradcheck_module(layer, torch.randn(2, 3, 5, dtype=torch.float64))
    assert calls


@pytest.mark.parametrize("groups", [1, 2])
def test_band_operator_matches_eager_and_finite_differences(groups, monkeypatch):
    fbm = perturb_(FrequencyBandModulation(4, spatial_group=groups, dtype=torch.float64), seed=4)
    x = torch.randn(2, 4, 7, 10, dtype=torch.float64)
    want = fbm(x)
    for module in ROUTE:
        monkeypatch.setattr(module, "compiling", lambda: True)
    calls = []
    op = low_pass.band_modulation_operator
    monkeypatch.setattr(low_pass, "band_modulation_operator", lambda *a: calls.append(a) or op(*a))
    torch.testing.assert_close(fbm(x), want, rtol=1e-10, atol=1e-12)
    assert calls
    assert gradcheck_module(fbm, x)
    args = [a.detach().requires_grad_() if isinstance(a, torch.Tensor) else a for a in calls[0]]
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("norm", ["batch", "frozen"])
def test_trunk_operator_matches_the_function_and_finite_differences(norm, monkeypatch):
    """KSM-Global's trunk as its compiled operator: the attentions, the running statistics it stores and their
    non-finite guard against the eager Function, gradients against finite differences, and opcheck."""
    from freqdyn.layers.fdconv import global_trunk, kernel_spatial_modulation

    layer = perturb_(FDConv(4, 6, 3, padding=1, kernel_num=3, attention_norm=norm, dtype=torch.float64), seed=9)
    reference = copy.deepcopy(layer)
    x = torch.randn(3, 4, 6, 7, dtype=torch.float64)
    op, calls = global_trunk.trunk_operator, []
    for module in (*ROUTE, global_trunk, kernel_spatial_modulation):
        monkeypatch.setattr(module, "compiling", lambda: True)
    monkeypatch.setattr(global_trunk, "trunk_operator", lambda *a: calls.append(a) or op(*a))
    for inputs in (x, torch.full_like(x, float("nan"))):  # a NaN batch leaves the statistics alone
        got = layer.KSM_Global(inputs.mean((2, 3)))
        monkeypatch.setattr(global_trunk, "compiling", lambda: False)
        want = reference.KSM_Global(inputs.mean((2, 3)))
        monkeypatch.setattr(global_trunk, "compiling", lambda: True)
        for name in ("channel", "filter", "spatial", "kernel"):
            torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-12, atol=1e-12, equal_nan=True)
        for a, b in zip(layer.KSM_Global.bn.buffers(), reference.KSM_Global.bn.buffers(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(calls) == 2
    trunk = layer.KSM_Global  # in train mode: the batch statistics' backward
    names = [n for n, _ in trunk.named_parameters()]

    def attentions(pooled, *params):
        att = torch.func.functional_call(trunk, dict(zip(names, params, strict=True)), (pooled,))
        return att.channel, att.filter, att.spatial, att.kernel

    params = tuple(p.detach().requires_grad_() for p in trunk.parameters())
    assert torch.autograd.gradcheck(attentions, (x.mean((2, 3)).requires_grad_(), *params), atol=1e-6, rtol=1e-5)
    args = [
        [t.detach().requires_grad_() for t in a] if i in (6, 7) else a.detach().requires_grad_(i < 6) if i < 10 else a
        for i, a in enumerate(calls[0])
    ]
    torch.library.opcheck(op, args)
