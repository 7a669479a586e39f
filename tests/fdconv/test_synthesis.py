"""The FDW synthesis routes (layers/fdconv/synthesis.py) against a per-sample, per-group loop of inverse FFTs."""

import pytest
import torch

from freqdyn.layers.fdconv.spectrum import frequency_groups
from freqdyn.layers.fdconv.synthesis import (
    fixed_matrix,
    group_basis,
    group_index,
    group_map,
    spectral_synthesis,
    spectral_synthesis_grads,
    synthesise,
    use_basis,
)


def _naive(kappa, dft, groups, size):
    """sum_{p, g} kappa[b, p * K + g] * irfft2(dft[p] on group g), one sample and group at a time."""
    copies, kernel_num = dft.shape[0], int(groups.max()) + 1
    out = []
    for sample in kappa:
        total = torch.zeros(size, dtype=dft.dtype)
        for p in range(copies):
            for g in range(kernel_num):
                masked = torch.view_as_complex(dft[p].contiguous()) * (groups == g)
                total = total + sample[p * kernel_num + g] * torch.fft.irfft2(masked, s=size)
        out.append(total)
    return torch.stack(out)


@pytest.mark.parametrize("rows,cols,copies,kernel_num,batch", [(12, 9, 1, 4, 3), (8, 16, 2, 3, 1), (5, 7, 3, 5, 2)])
@pytest.mark.parametrize("basis", [False, True])
def test_routes_equal_the_per_group_sum(rows, cols, copies, kernel_num, batch, basis):
    torch.manual_seed(0)
    dft = torch.randn(copies, rows, cols // 2 + 1, 2, dtype=torch.float64)
    groups = frequency_groups(rows, cols, kernel_num, "stable")
    kappa = torch.randn(batch, copies * kernel_num, dtype=torch.float64)
    out = synthesise(kappa, dft, groups, kernel_num, (rows, cols), basis)
    torch.testing.assert_close(out, _naive(kappa, dft, groups.long(), (rows, cols)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("write", ["in_place", "new_tensor"])
def test_fft_route_follows_a_rewritten_group_buffer(write):
    """The FFT route keeps the int64 group index between calls: a rewritten buffer must not reuse a stale one."""
    torch.manual_seed(2)
    dft = torch.randn(1, 8, 5, 2, dtype=torch.float64)
    kappa = torch.randn(2, 4, dtype=torch.float64)
    groups = frequency_groups(8, 8, 4, "stable")
    synthesise(kappa, dft, groups, 4, (8, 8), False)
    shuffled = groups.flip(0)
    if write == "in_place":
        groups.copy_(shuffled)
    else:
        groups = shuffled
    out = synthesise(kappa, dft, groups, 4, (8, 8), False)
    torch.testing.assert_close(out, _naive(kappa, dft, shuffled.long(), (8, 8)), rtol=1e-10, atol=1e-12)
    with torch.inference_mode():
        again = synthesise(kappa, dft, groups, 4, (8, 8), False)
    torch.testing.assert_close(again, out, rtol=0, atol=0)


def test_basis_and_fixed_matrix_are_the_groups_and_their_sum():
    torch.manual_seed(1)
    dft = torch.randn(2, 6, 5, 2, dtype=torch.float64)
    groups = frequency_groups(6, 8, 4, "stable")
    basis = group_basis(dft, groups, 4, (6, 8))
    unit = torch.eye(8, dtype=torch.float64)  # one group of one copy at a time
    torch.testing.assert_close(basis.reshape(8, 6, 8), _naive(unit, dft, groups.long(), (6, 8)))
    torch.testing.assert_close(fixed_matrix(dft, (6, 8))[0], basis.sum(0).reshape(6, 8))


def test_route_chooser():
    assert use_basis("basis", 1, 64, (576, 289), False) and not use_basis("fft", 64, 4, (8, 8), False)
    assert use_basis("auto", 64, 4, (192, 96), False)  # many samples, few groups: one basis beats B inverse FFTs
    assert not use_basis("auto", 1, 64, (192, 96), False)  # one sample: its own inverse FFT is cheaper
    assert not use_basis("auto", 64, 4096, (4096, 4096), False)  # the basis would exceed BASIS_MAX_ELEMENTS
    assert use_basis("auto", 1, 4, (192, 96), True)  # compiled: the large-batch choice for every batch


def test_kappa_gradient_is_one_scatter_with_the_scale_after_it():
    """The adjoint of the scaled group map against autograd, taken by index_add_'s scatter_add_ path: an index_add_
    with an alpha runs a per-index loop (17x slower at a 512-channel 3x3 kernel's 1536 x 769 coefficients here)."""
    torch.manual_seed(3)
    rows, cols, kernel_num, scale = 12, 9, 4, 0.37
    dft = torch.randn(1, rows, cols // 2 + 1, 2, dtype=torch.float64)
    index = group_index(frequency_groups(rows, cols, kernel_num, "stable"))
    kappa = torch.randn(2, kernel_num, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, rows, cols, dtype=torch.float64)
    kmap = group_map(kappa * scale, index, kernel_num)
    spectral_synthesis(kmap, dft, (rows, cols)).backward(grad)
    with torch.profiler.profile() as prof:
        grad_kappa, _ = spectral_synthesis_grads(grad, kmap.detach(), dft, index, kernel_num, True, False, scale)
    torch.testing.assert_close(grad_kappa, kappa.grad, rtol=1e-10, atol=1e-12)
    assert "aten::scatter_add_" in {e.name for e in prof.events()}
