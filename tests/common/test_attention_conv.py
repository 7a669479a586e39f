"""The attention branches' 1-D channel conv: its sliding-window matmul and hand-written backward against F.conv1d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from freqdyn.layers._common.attention_conv import AttentionConv1d, _SlidingTaps


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("length", [1, 6, 17])
@pytest.mark.parametrize("size", [1, 3, 5])
@pytest.mark.parametrize("bias", [True, False])
def test_sliding_taps_matches_conv1d_for_every_padding(batch: int, length: int, size: int, bias: bool) -> None:
    torch.manual_seed(length * size + batch)
    x = torch.randn(batch, length, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 1, size, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True) if bias else None
    grad = torch.randn(batch, length, 4, dtype=torch.float64)
    for pad in range(size):
        inputs = [x, weight] + ([b] if bias else [])
        out = _SlidingTaps.apply(x, weight, b, pad)
        got = torch.autograd.grad(out, inputs, grad)
        ref = F.conv1d(F.pad(x[:, None], (pad, size - 1 - pad)), weight, b).transpose(1, 2)
        expected = torch.autograd.grad(ref, inputs, grad)
        torch.testing.assert_close(out, ref)
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e)


def test_sliding_taps_gradcheck() -> None:
    x = torch.randn(2, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 1, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: _SlidingTaps.apply(*a, 2), (x, weight, bias))


@pytest.mark.parametrize("bias", [True, False])
def test_attention_conv1d_module_equals_nn_conv1d(bias: bool) -> None:
    torch.manual_seed(0)
    layer = AttentionConv1d(1, 6, 5, padding=2, bias=bias)
    plain = torch.nn.Conv1d(1, 6, 5, padding=2, bias=bias)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(3, 1, 11, requires_grad=True)
    out, ref = layer(x), plain(x)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, [x, layer.weight], grad)
    expected = torch.autograd.grad(ref, [x, plain.weight], grad)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("custom", [True, False])
def test_attention_conv1d_channels_last_form(custom: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-D x (B, L) is the one input channel: (B, L, out), the transposed conv1d, by either route."""
    if not custom:
        monkeypatch.setattr("freqdyn.layers._common.attention_conv.may_use_custom_kernels", lambda: False)
    torch.manual_seed(1)
    layer = AttentionConv1d(1, 4, 3, padding=1, bias=True)
    x = torch.randn(2, 9)
    torch.testing.assert_close(layer(x), F.conv1d(x[:, None], layer.weight, layer.bias, padding=1).transpose(1, 2))
