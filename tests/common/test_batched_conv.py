import pytest
import torch
import torch.nn.functional as F

from freqdyn.layers._common.batched_conv import batched_conv2d, per_sample_conv2d
from freqdyn.layers.fdconv.spectrum import matrix_to_weight

CASES = [  # (in, out, kernel, stride, padding, dilation, groups)
    (4, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (6, 4, (3, 1), (1, 1), (1, 0), (1, 1), 1),
    (6, 4, (1, 3), (2, 1), (0, 1), (1, 1), 2),
    (4, 4, (3, 3), (1, 1), (2, 2), (2, 2), 4),
    (6, 5, (1, 1), (1, 1), (0, 0), (1, 1), 1),  # 1x1: one bmm
    (6, 5, (1, 1), (2, 2), (0, 0), (1, 1), 1),
    (6, 4, (1, 1), (1, 1), (0, 0), (1, 1), 2),  # grouped 1x1: the conv
]


def per_sample(x, weight, bias, stride, padding, dilation, groups):
    return torch.cat(
        [
            F.conv2d(x[b : b + 1], weight[b], None if bias is None else bias[b], stride, padding, dilation, groups)
            for b in range(x.shape[0])
        ]
    )


def transposed_view_kernels(batch, case, dtype):
    """Per-sample kernels as FDConv builds them: a transposed view of (B, O*kh, I/g*kw) matrices."""
    cin, cout, k, _, _, _, g = case
    matrix = torch.randn(batch, cout * k[0], cin // g * k[1], dtype=dtype)
    return matrix_to_weight(matrix, k)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_matches_per_sample_conv(case, channels_last):
    cin, cout, _k, stride, padding, dilation, groups = case
    x = torch.randn(3, cin, 9, 7, dtype=torch.float64)
    weight = transposed_view_kernels(3, case, torch.float64)
    bias = torch.randn(3, cout, dtype=torch.float64)
    ref = per_sample(x, weight, bias, stride, padding, dilation, groups)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = batched_conv2d(x, weight, bias, stride, padding, dilation, groups)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("case", CASES[:2])
def test_channels_last_float32_and_gradcheck(case):
    # torch 2.14's CPU conv mishandles channels-last inputs with kernels or batch dims whose size-1 dims have
    # short strides (wrong outputs in float32, wrong weight gradients in float64): both must be avoided here
    cin, cout, k, stride, padding, dilation, groups = case
    x = torch.randn(2, cin, 6, 5)
    weight = transposed_view_kernels(2, case, torch.float32)
    ref = per_sample(x, weight, None, stride, padding, dilation, groups)
    out = batched_conv2d(
        x.contiguous(memory_format=torch.channels_last), weight, None, stride, padding, dilation, groups
    )
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    x = torch.randn(2, cin, 5, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    matrix = torch.randn(2, cout * k[0], cin // groups * k[1], dtype=torch.float64, requires_grad=True)
    bias = torch.randn(cout, dtype=torch.float64, requires_grad=True)

    def fn(inp, mat, b):
        return batched_conv2d(inp, matrix_to_weight(mat, k), b, stride, padding, dilation, groups)

    assert torch.autograd.gradcheck(fn, (x.requires_grad_(), matrix, bias))


@pytest.mark.parametrize("channels_last", [False, True])
def test_pointwise_op_count_does_not_grow_with_the_batch(channels_last):
    """Per-sample 1x1 kernels run as one bmm: the groups=B 1x1 conv took the CPU's slow path, one conv per sample
    (31 dispatched calls at B=2, 109 at B=8)."""
    from freqdyn.tools.op_count import aten_calls

    counts = []
    for batch in (2, 8):
        x = torch.randn(batch, 16, 5, 5, requires_grad=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        weight = torch.randn(batch, 8, 16, 1, 1, requires_grad=True)
        grad = torch.randn(batch, 8, 5, 5)  # a dense gradient, as a network's (an expanded one makes bmm loop)

        def step(x=x, w=weight, grad=grad):
            torch.autograd.grad(batched_conv2d(x, w, None, (1, 1), (0, 0), (1, 1), 1), (x, w), grad)

        counts.append(sum(aten_calls(step).values()))
    assert counts[0] == counts[1] and counts[0] < 40, counts


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_compiled_operator_matches_and_registers_its_fake_and_gradient(case, channels_last):
    """torch.compile runs the per-sample conv as one opaque operator: its output against the per-sample reference,
    and torch.library.opcheck's checks of its schema, fake shapes and strides, and autograd registration."""
    cin, _cout, _k, stride, padding, dilation, groups = case
    x = torch.randn(2, cin, 7, 6, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = transposed_view_kernels(2, case, torch.float64).contiguous()
    args = (x, weight, [*stride], [*padding], [*dilation], groups)
    ref = per_sample(x, weight, None, stride, padding, dilation, groups)
    torch.testing.assert_close(per_sample_conv2d(*args), ref, rtol=1e-12, atol=1e-12)
    torch.library.opcheck(per_sample_conv2d, (x.requires_grad_(), weight.requires_grad_(), *args[2:]))


@pytest.mark.parametrize("case", CASES[:3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_compiled_operator_takes_a_shared_kernel(case, channels_last):
    """A shared (1, O, C // groups, kh, kw) kernel (FBM's attention conv under compile) through the operator: the
    plain conv's output and gradients, and opcheck's checks."""
    cin, _cout, _k, stride, padding, dilation, groups = case
    x = torch.randn(3, cin, 7, 6, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = transposed_view_kernels(1, case, torch.float64).contiguous()
    args = ([*stride], [*padding], [*dilation], groups)
    ref = F.conv2d(x, weight[0], None, stride, padding, dilation, groups)
    torch.testing.assert_close(per_sample_conv2d(x, weight, *args), ref, rtol=1e-12, atol=1e-12)
    leaves = (x.requires_grad_(), weight.requires_grad_())
    assert torch.autograd.gradcheck(lambda a, b: per_sample_conv2d(a, b, *args), leaves)
    torch.library.opcheck(per_sample_conv2d, (*leaves, *args))
