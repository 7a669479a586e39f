import numpy as np
import pytest
import torch

from freqdyn.layers import frequency_groups, matrix_to_weight, weight_to_matrix


@pytest.mark.parametrize("rows,cols,k", [(8, 8, 4), (12, 9, 5), (33, 7, 64), (192, 192, 64), (1, 16, 3), (48, 48, 64)])
@pytest.mark.parametrize("order", ["official", "stable"])
def test_groups_partition_the_spectrum_in_order_of_radius(rows, cols, k, order):
    groups = frequency_groups(rows, cols, k, order).long().numpy()
    assert groups.shape == (rows, cols // 2 + 1)
    sizes = np.bincount(groups.ravel(), minlength=k)
    assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1 and sizes.sum() == groups.size
    # independent radius: numpy float64 fftfreq / rfftfreq
    fy, fx = np.fft.fftfreq(rows)[:, None], np.fft.rfftfreq(cols)[None, :]
    radius = np.sqrt(fy**2 + fx**2) + 0 * groups
    for g in range(k - 1):
        assert radius[groups == g].max() <= radius[groups == g + 1].min() + 1e-7  # float32 radii (official)


def test_stable_groups_are_the_block_split_of_a_stable_radius_sort():
    rows, cols, k = 16, 16, 8
    groups = frequency_groups(rows, cols, k, order="stable").long().flatten()
    fy, fx = np.fft.fftfreq(rows)[:, None], np.fft.rfftfreq(cols)[None, :]
    key = (fy**2 + fx**2).ravel()
    order = np.argsort(key, kind="stable")
    n = key.size
    expected = np.empty(n, dtype=np.int64)
    expected[order] = np.arange(n) // (n // k)
    assert torch.equal(groups, torch.from_numpy(expected))


def test_groups_are_deterministic_and_compact():
    a, b = frequency_groups(96, 288, 64), frequency_groups(96, 288, 64)
    assert torch.equal(a, b) and a.dtype == torch.uint8
    assert frequency_groups(40, 40, 300).dtype == torch.int16


@pytest.mark.parametrize("k", [0, 10_000])
def test_bad_kernel_num(k):
    with pytest.raises(ValueError, match="kernel_num"):
        frequency_groups(8, 8, k)


def test_weight_matrix_layout_and_round_trip():
    w = torch.randn(3, 4, 2, 5)
    m = weight_to_matrix(w)
    for o, i, a, b in [(0, 0, 0, 0), (2, 3, 1, 4), (1, 2, 0, 3)]:
        assert m[o * 2 + a, i * 5 + b] == w[o, i, a, b]
    assert torch.equal(matrix_to_weight(m, (2, 5)), w)


def test_group_kernels_are_orthogonal_and_sum_to_the_weight():
    from freqdyn import FDConv

    layer = FDConv(24, 20, 3, padding=1, kernel_num=6).double()
    weight = torch.randn(20, 24, 3, 3, dtype=torch.float64)
    layer.set_spatial_weight(weight)
    kernels = layer.frequency_kernels()  # (P, K, O, I, kh, kw)
    flat = kernels.reshape(6, -1)
    gram = flat @ flat.t()
    off = gram - torch.diag(torch.diag(gram))
    assert off.abs().max() < 1e-9 * gram.diag().max()
    torch.testing.assert_close(kernels.sum(dim=(0, 1)).detach() / 6, weight, rtol=0, atol=1e-12)


@pytest.mark.parametrize("rows,cols", [(6, 8), (7, 9), (9, 1), (12, 33)])
def test_inverse_spectrum_as_matmuls_while_tracing_equals_irfft2(rows, cols):
    from freqdyn.layers.fdconv.spectrum import inverse_spectrum

    z = torch.randn(3, rows, cols // 2 + 1, 2, dtype=torch.float64)  # not Hermitian at DC / Nyquist
    expected = torch.fft.irfft2(torch.view_as_complex(z), s=(rows, cols))
    traced = torch.jit.trace(lambda t: inverse_spectrum(t, (rows, cols)), (z,), check_trace=False)
    assert "fft" not in str(traced.graph)
    torch.testing.assert_close(traced(z), expected, rtol=1e-12, atol=1e-12)
