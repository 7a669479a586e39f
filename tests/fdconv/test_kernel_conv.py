"""FDConv's training forward as one autograd Function (``layers/fdconv/kernel_conv.py``): its hand-written backward
against finite differences, over both aggregation branches and the options that change its sequence."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from freqdyn import FDConv, FDLinear
from freqdyn.layers.fdconv import kernel_conv
from freqdyn.tools.op_count import step
from helpers import gradcheck_module, perturb_

CASES = {
    "default": {},
    "stride-dilation": dict(stride=2, dilation=2, padding=2),
    "1x1": dict(kernel_size=1, padding=0),
    "1x1-stride": dict(kernel_size=1, padding=0, stride=2),
    "3x5": dict(kernel_size=(3, 5), padding=(1, 2)),
    "no-local": dict(use_ksm_local=False),
    "tanh": dict(ksm_act="tanh"),
    "copies": dict(param_ratio=2),
    "reflect": dict(padding_mode="reflect"),
    "same": dict(padding="same"),
    "kept-kernels": dict(recompute_kernels=False),
    "no-bias": dict(bias=False),
}


def _graph_names(root: torch.Tensor) -> set[str]:
    names, todo = set(), [root.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            todo.extend(n for n, _ in node.next_functions)
    return names


@pytest.fixture(params=[False, True], ids=["kept", "rebuilt"])
def rebuild(request, monkeypatch):
    """Both backward routes: these small kernels are kept unless the outright allowance is off."""
    if request.param:
        monkeypatch.setattr(kernel_conv, "KEPT_ANYWAY", 0)
    return request.param


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("aggregation", ["weight", "feature"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_gradients_match_finite_differences(case, aggregation, memory_format, rebuild):
    options = dict(kernel_size=3, padding=1, kernel_num=3, aggregation=aggregation)
    options.update(CASES[case])
    layer = perturb_(FDConv(4, 6, dtype=torch.float64, **options), seed=7)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64).to(memory_format=memory_format)
    assert "_KernelConvBackward" in _graph_names(layer(x.requires_grad_()))
    assert gradcheck_module(layer, x.detach())


def _function_calls(layer: FDConv, x: torch.Tensor) -> int:
    """aten calls of one training step inside the Function's forward and backward."""
    run = step(layer, [x], True)
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()

    def inside(event) -> bool:
        while event is not None:
            if event.name in ("_KernelConv", "_KernelConvBackward"):
                return True
            event = event.cpu_parent
        return False

    return sum(1 for e in prof.events() if e.name.startswith("aten::") and inside(e))


@pytest.mark.parametrize("aggregation", ["weight", "feature"])
def test_op_count_is_independent_of_the_batch_and_width(aggregation):
    counts = {
        (batch, width): _function_calls(
            FDConv(width, width, 3, padding=1, kernel_num=4, aggregation=aggregation, synthesis="fft"),
            torch.randn(batch, width, 6, 6),
        )
        for batch, width in ((2, 16), (5, 16), (2, 32))
    }
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("tokens", [3, 40])
@pytest.mark.parametrize("options", [{}, dict(use_ksm_local=False, param_ratio=2), dict(ksm_act="tanh", bias=False)])
def test_linear_gradients_match_finite_differences(tokens, options, rebuild):
    layer = perturb_(FDLinear(5, 6, kernel_num=3, dtype=torch.float64, **options), seed=8)
    x = torch.randn(2, tokens, 5, dtype=torch.float64)
    assert "_KernelConvBackward" in _graph_names(layer(x.requires_grad_()))
    assert gradcheck_module(layer, x.detach())


def _peak_bytes(run) -> int:
    """Peak of the memory allocated during ``run()`` (CPU allocations, in order, from the profiler)."""
    run()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    current = peak = 0
    for event in events:
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def test_backward_holds_few_kernel_sized_tensors_at_once():
    """A wide layer on a small map, its kernels rebuilt: a training step's peak is a few kernel-sized tensors (the
    synthesis, the local factor, the kernel and its gradient; 5.8 of them here), not the eleven the first version
    of the Function held at once (the checkpoint it replaced: 6.8)."""
    layer = FDConv(256, 256, 3, padding=1, kernel_num=8)
    x = torch.randn(4, 256, 4, 4)
    kernel_bytes = 4 * 256 * 256 * 9 * 4
    assert _peak_bytes(lambda: layer(x).sum().backward()) <= 6.5 * kernel_bytes


@pytest.mark.parametrize("present", ["both", "channel", "filter", "no-spatial"])
def test_factor_gradients_match_autograd(present):
    """The attentions' gradients from the kernel's, against autograd of S * L * spatial * channel * filter, with the
    one-sided factors (one attention expanded over the other dim) the feature branch and a missing head give."""
    torch.manual_seed(5)
    batch, out_channels, in_channels, kh, kw = shape = torch.Size((3, 4, 5, 2, 3))
    synth, local, grad_kernel = (torch.randn(shape, dtype=torch.float64) for _ in range(3))
    spatial = None if present == "no-spatial" else torch.randn(batch, kh * kw, dtype=torch.float64)
    channel = None if present == "filter" else torch.randn(batch, in_channels, dtype=torch.float64)
    filter_ = None if present == "channel" else torch.randn(batch, out_channels, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() if t is not None else None for t in (spatial, channel, filter_)]
    kernel = synth * local
    if leaves[0] is not None:
        kernel = kernel * leaves[0].view(batch, 1, 1, kh, kw)
    if leaves[1] is not None:
        kernel = kernel * leaves[1].view(batch, 1, in_channels, 1, 1)
    if leaves[2] is not None:
        kernel = kernel * leaves[2].view(batch, out_channels, 1, 1, 1)
    (kernel * grad_kernel).sum().backward()
    fc = kernel_conv._filter_channel(channel, filter_, shape)
    grads = kernel_conv._factor_grads(grad_kernel, synth, local, spatial, channel, filter_, fc, (True, True, True))
    for got, leaf in zip(grads, leaves, strict=True):
        if leaf is None:
            assert got is None
        else:
            torch.testing.assert_close(got, leaf.grad, rtol=1e-10, atol=1e-12)
