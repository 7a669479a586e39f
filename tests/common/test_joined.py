"""Joined parameters: torch.cat's values and gradients, with a backward of one split."""

import pytest
import torch

from freqdyn.layers._common.joined import joined
from freqdyn.tools.op_count import aten_calls


@pytest.mark.parametrize("shape", [None, (-1, 6)])
def test_joined_equals_cat_with_its_gradients(shape):
    parts = [torch.randn(n, 2, 3, dtype=torch.float64, requires_grad=True) for n in (1, 4, 2)]
    out = joined(parts, shape)
    expected = torch.cat(parts) if shape is None else torch.cat(parts).view(shape)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda *p: joined(p, shape), parts)


def test_joined_backward_dispatches_fewer_calls_than_cat():
    parts = [torch.randn(n, 8, requires_grad=True) for n in (3, 5, 2, 6)]
    grad = torch.randn(16, 8)

    def step(join):
        return lambda: torch.autograd.grad(join(parts), parts, grad)

    ours = sum(aten_calls(step(joined)).values())
    cats = sum(aten_calls(step(torch.cat)).values())
    assert ours + len(parts) <= cats, (ours, cats)


def test_under_vmap_it_is_the_plain_cat():
    parts = [torch.randn(3, n, 4) for n in (2, 5)]
    out = torch.func.vmap(lambda a, b: joined([a, b]))(*parts)
    torch.testing.assert_close(out, torch.cat(parts, dim=1))
