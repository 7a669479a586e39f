import functools
import importlib

import pytest
import torch

from freqdyn.layers import carafe
from freqdyn.tools.op_count import aten_calls
from freqdyn.tools.reference import naive_carafe
from freqdyn.tools.timing import saved_megabytes

# (h, w, scale, Ho, Wo, kernel, groups)
CASES = [
    (5, 6, 2, 10, 12, 5, 1),
    (5, 6, 2, 9, 11, 5, 2),  # hr = 2 lr - 1 (ceil-downsampled odd map)
    (5, 6, 2, 11, 13, 3, 1),  # hr = 2 lr + 1 (floor-downsampled odd map)
    (7, 7, 1, 7, 7, 3, 4),
    (2, 2, 2, 4, 4, 5, 1),  # too small to reflect-pad by 2: replicate
    (1, 3, 2, 2, 6, 5, 1),
]


def _kernels(batch, groups, k, height, width, dtype=torch.float64):
    return torch.softmax(torch.randn(batch, groups, k * k, height, width, dtype=dtype), 2).reshape(
        batch, -1, height, width
    )


@pytest.mark.parametrize("h,w,scale,out_h,out_w,k,groups", CASES)
@pytest.mark.parametrize("padding", ["zeros", "reflect"])
@pytest.mark.parametrize("path", ["autograd function", "plain ops"])
def test_matches_unfold_formulation(h, w, scale, out_h, out_w, k, groups, padding, path, monkeypatch):
    if path == "plain ops":  # the formulation taken under export and torch.func
        monkeypatch.setattr(
            importlib.import_module("freqdyn.layers.freqfusion.carafe"), "may_use_custom_kernels", lambda: False
        )
    x = torch.randn(2, 8, h, w, dtype=torch.float64)
    kernels = _kernels(2, groups, k, out_h, out_w)
    out = carafe(x, kernels, k, groups, scale, padding)
    assert out.shape == (2, 8, out_h, out_w)
    torch.testing.assert_close(out, naive_carafe(x, kernels, k, groups, scale, padding), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_uniform_kernel_is_a_box_filter_then_nearest_upsampling(padding):
    # zeros: mmcv's CARAFE skips the taps outside the map; reflect: the mmcv-less fallback
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    kernels = torch.full((1, 9, 12, 12), 1 / 9, dtype=torch.float64)
    padded = torch.nn.functional.pad(x, [1, 1, 1, 1], mode="constant" if padding == "zeros" else padding)
    box = torch.nn.functional.avg_pool2d(padded, 3, stride=1)
    expected = box.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    torch.testing.assert_close(carafe(x, kernels, 3, 1, 2, padding), expected)


@pytest.mark.parametrize("h,w,scale,out_h,out_w,k,groups", [*CASES, (3, 4, 3, 8, 13, 3, 1), (4, 3, 1, 4, 3, 1, 2)])
@pytest.mark.parametrize("padding", ["zeros", "reflect"])
def test_gradcheck(h, w, scale, out_h, out_w, k, groups, padding):
    """The custom backward (rows folded back through a strided view) against float64 finite differences."""
    x = torch.randn(2, 4, h, w, dtype=torch.float64, requires_grad=True)
    kernels = _kernels(2, groups, k, out_h, out_w).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: carafe(a, b, k, groups, scale, padding), (x, kernels), fast_mode=True)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("scale,k,groups", [(2, 5, 1), (2, 3, 2), (1, 3, 4)])
def test_two_maps_together_equal_each_alone(scale, k, groups, layout):
    """One pass over two maps that share the kernels (FreqFusion's ALPF): each output and every gradient as the
    unfold formulation of each map alone, for maps and kernels of any strides."""
    from freqdyn.layers.freqfusion.carafe import carafe_together

    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    a = torch.randn(2, 4 * groups, 5, 6, dtype=torch.float64).to(memory_format=memory_format).requires_grad_()
    b = torch.randn(2, 2 * groups, 5, 6, dtype=torch.float64).requires_grad_()
    kernels = _kernels(2, groups, k, 5 * scale, 6 * scale).to(memory_format=memory_format).requires_grad_()
    outs = carafe_together((a, b), kernels, k, groups, scale)
    expected = [naive_carafe(t, kernels, k, groups, scale) for t in (a, b)]
    weights = [torch.randn_like(e) for e in expected]
    grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights, strict=True)), (a, b, kernels))
    wanted = torch.autograd.grad(sum((e * w).sum() for e, w in zip(expected, weights, strict=True)), (a, b, kernels))
    for got, want in zip([*outs, *grads], [*expected, *wanted], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x, y, w: carafe_together((x, y), w, k, groups, scale), (a, b, kernels), fast_mode=True
    )


def test_op_count_is_fixed():
    """One matmul over all pixels and kernel rows: the same calls for any batch, channels, map and kernel size (up to
    a few that aten nests by tensor size); the per-row formulation made 276 for k = 5 and grew with k."""
    counts = []
    for scale, k in ((1, 3), (2, 5), (2, 3), (1, 7)):
        for batch, channels, size in ((1, 8, 5), (4, 64, 16), (3, 24, 11)):
            x = torch.randn(batch, channels, size, size, requires_grad=True)
            kernels = _kernels(batch, 1, k, size * scale, size * scale, torch.float32).requires_grad_()
            step = functools.partial(lambda a, b, k, s: carafe(a, b, k, 1, s).sum().backward(), x, kernels, k, scale)
            counts.append(sum(aten_calls(step).values()))
    assert max(counts) - min(counts) <= 12 and max(counts) <= 90, counts


def test_autograd_keeps_no_unfold_tensor():
    x = torch.randn(1, 64, 32, 32, requires_grad=True)
    kernels = _kernels(1, 1, 5, 64, 64, dtype=torch.float32).requires_grad_()
    cpu = torch.device("cpu")
    ours = saved_megabytes(lambda: carafe(x, kernels, 5, 1, 2).sum().backward(), cpu)
    naive = saved_megabytes(lambda: naive_carafe(x, kernels, 5, 1, 2).sum().backward(), cpu)
    unfold_mb = 64 * 25 * 64 * 64 * 4 / 2**20  # the (B, C*k*k, Ho, Wo) tensor of the unfold formulation
    assert naive >= unfold_mb and ours < unfold_mb / 5


@pytest.mark.parametrize(
    "kernels_shape,kernel_size,groups,scale,match",
    [
        ((1, 9, 10, 10), 3, 1, 1, "not 1x"),
        ((1, 9, 16, 16), 3, 2, 2, "groups\\*k\\*k"),
        ((1, 16, 16, 16), 4, 1, 2, "odd"),
        ((1, 9, 13, 16), 3, 1, 2, "not 2x"),
    ],
)
def test_bad_arguments_raise_value_error(kernels_shape, kernel_size, groups, scale, match):
    with pytest.raises(ValueError, match=match):
        carafe(torch.randn(1, 4, 8, 8), torch.rand(kernels_shape), kernel_size, groups, scale)
