"""The one-call views the autograd Functions use in place of torch's multi-call ones: equal to torch's own view of
the same tensor (values, shape and memory), on contiguous, offset and transposed inputs."""

import pytest
import torch

from freqdyn.layers._common.device_dtype import inserted, narrowed, selected, split_views, swapped, zeroed


def _sources() -> list[torch.Tensor]:
    base = torch.arange(2 * 5 * 6 * 7, dtype=torch.float32).view(2, 5, 6, 7)
    return [base, base[:, 1:], base.transpose(1, 3), base[..., 2:]]  # contiguous, offset, permuted, sliced


@pytest.mark.parametrize("index", range(4))
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_narrowed_selected_and_split_views_are_torchs_views(index, dim):
    x = _sources()[index]
    size = x.shape[dim]
    for start, length in ((0, 1), (1, size - 1), (size - 1, 1)):
        view = narrowed(x, dim, start, length)
        assert view.data_ptr() == x.narrow(dim, start, length).data_ptr()
        assert torch.equal(view, x.narrow(dim, start, length))
    for i in (0, size - 1):
        assert torch.equal(selected(x, dim, i), x.select(dim, i))
    sizes = (1, size - 1)
    for got, want in zip(split_views(x, sizes, dim), x.split_with_sizes(sizes, dim), strict=True):
        assert torch.equal(got, want) and got.data_ptr() == want.data_ptr()


@pytest.mark.parametrize("index", range(4))
def test_inserted_and_swapped_are_torchs_views(index):
    x = _sources()[index]
    for dim in range(x.dim() + 1):
        assert torch.equal(inserted(x, dim), x.unsqueeze(dim))
    for t in (x, x[0], x[0, 0]):  # 4-D, 3-D and 2-D
        assert torch.equal(swapped(t), t.mT)
        assert swapped(t).data_ptr() == t.data_ptr()


def test_zeroed_is_zeros():
    got = zeroed(3, 4, dtype=torch.float64, device=torch.device("cpu"))
    assert got.dtype == torch.float64 and torch.equal(got, torch.zeros(3, 4, dtype=torch.float64))
