"""FDW synthesis (FDConv §3.1): per-sample kernels from the Fourier weight and the kernel attention, as pure
functions with one route chooser.

The Fourier weight ``dft_weight`` (P, rows, cols // 2 + 1, 2) holds P copies of the rfft2 of the kernel matrix
(rows = O * kh, cols = I / groups * kw); ``freq_group`` (rows, cols // 2 + 1) assigns every coefficient to one of K
disjoint frequency groups. With a kernel attention kappa (B, P * K), already scaled by alpha, sample b's kernel
matrix is sum_{p, g} kappa[b, p * K + g] * irfft2(dft_weight[p] on group g). The sum is linear in kappa, so two
routes compute it:

* ``'fft'``: gather each sample's group attentions onto the spectrum and run one inverse FFT per sample;
* ``'basis'``: one matmul of kappa with the spatial basis of the P * K group kernels, built from the current
  weight at every call (nothing cached, so the output always follows the weights).

:func:`use_basis` picks the cheaper by shape and batch (by shape alone under ``torch.compile``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from .._common.device_dtype import narrowed, normal_tensors, reshaped, scalar, zeroed
from .._common.program_mode import compiling, exporting, functorch_active
from .spectrum import inverse_spectrum

SYNTHESES = ("auto", "fft", "basis")
BASIS_MAX_ELEMENTS = 2**24  # the largest basis (P * K * rows * cols values) the 'auto' route builds
# freq_group buffer -> (its version, its int64 index); an entry goes with its buffer
_GROUP_INDICES: WeakIdKeyDictionary = WeakIdKeyDictionary()


def group_basis(dft_weight: Tensor, freq_group: Tensor, kernel_num: int, size: tuple[int, int]) -> Tensor:
    """(P * K, rows * cols): the inverse FFT of each frequency group of each copy on its own, in dft_weight's dtype.

    The group masks are a comparison with the group numbers: ``F.one_hot`` checks its input's range on the host
    (two syncs per call), which CUDA-graph capture cannot take.
    """
    groups = torch.arange(kernel_num, device=freq_group.device)
    onehot = (freq_group[None] == groups[:, None, None]).to(dft_weight.dtype)  # (K, rows, width)
    masked = dft_weight[:, None] * onehot[None, :, :, :, None]
    return inverse_spectrum(masked, size).reshape(dft_weight.shape[0] * kernel_num, -1)


def fixed_matrix(dft_weight: Tensor, size: tuple[int, int]) -> Tensor:
    """(1, rows, cols): the kernel matrix of the P copies' sum, every group weighted 1 (unscaled)."""
    return inverse_spectrum(dft_weight.sum(0), size)[None]


def use_basis(synthesis: str, batch: int, num_mixed: int, size: tuple[int, int], compiling: bool) -> bool:
    """Whether the ``'basis'`` route is taken: as asked, or for ``'auto'`` where its cost (a basis of ``num_mixed``
    group kernels from as many inverse FFTs, then a matmul) undercuts one inverse FFT per sample. Compiled, the
    large-batch choice, so that one graph serves every batch size.
    """
    if synthesis != "auto":
        return synthesis == "basis"
    elements = size[0] * size[1]
    if num_mixed * elements > BASIS_MAX_ELEMENTS:
        return False
    fft = elements * max(math.log2(elements), 1.0)
    if compiling:
        return num_mixed * elements / 4 < fft
    return batch * num_mixed * elements / 4 + num_mixed * fft < batch * fft


def synthesise(
    kappa: Tensor, dft_weight: Tensor, freq_group: Tensor, kernel_num: int, size: tuple[int, int], basis: bool
) -> Tensor:
    """Kernel matrices (B, rows, cols) from the scaled kernel attention ``kappa`` (B, P * K), by the basis route
    (``basis``) or the FFT route (module docstring); in kappa's dtype, which dft_weight must share.
    """
    rows, cols = size
    if basis:
        return (kappa @ group_basis(dft_weight, freq_group, kernel_num, size)).reshape(-1, rows, cols)
    return spectral_synthesis(group_map(kappa, group_index(freq_group), kernel_num), dft_weight, size)


def group_index(freq_group: Tensor) -> Tensor:
    """``freq_group`` (rows, width) flattened to the int64 index of :func:`group_map`: an empty index and a copy
    (``long()`` dispatches two more calls), kept for the next forward while ``freq_group`` is the same tensor at
    the same version (a write, a load or a move makes a new index). Under ``torch.func`` (the buffer may be batched)
    and in exports (ONNX has no in-place copy), ``long()`` itself; while compiling, or for an inference tensor
    (which has no version), made anew.
    """
    if functorch_active() or exporting():
        return freq_group.view(-1).long()
    if compiling() or freq_group.is_inference():
        return _new_group_index(freq_group)
    kept = _GROUP_INDICES.get(freq_group)
    if kept is not None and kept[0] == freq_group._version:
        return kept[1]
    with normal_tensors():  # a cached inference tensor could not be saved for a later backward
        index = _new_group_index(freq_group)
    _GROUP_INDICES[freq_group] = (freq_group._version, index)
    return index


def _new_group_index(freq_group: Tensor) -> Tensor:
    index = torch.empty(freq_group.numel(), dtype=torch.int64, device=freq_group.device)
    return index.copy_(freq_group.view(-1))


def group_map(kappa: Tensor, index: Tensor, kernel_num: int) -> Tensor:
    """(B * P, rows * width): each coefficient's attention, kappa (B, P * K) gathered by its group ``index``
    (rows * width,) (``freq_group`` flattened, int64).
    """
    # views, not reshapes or indexing: one dispatched op each, forward and backward; none for one copy (P = 1)
    rows = kappa if kappa.shape[1] == kernel_num else reshaped(kappa, -1, kernel_num)
    return rows.index_select(1, index)


def spectral_synthesis(kmap: Tensor, dft_weight: Tensor, size: tuple[int, int]) -> Tensor:
    """The FFT route: kernel matrices (B, rows, cols) from the group map ``kmap`` (B * P, rows * width) of
    :func:`group_map`.
    """
    rows, cols = size
    copies, width = dft_weight.shape[0], cols // 2 + 1
    batch = kmap.shape[0] // copies
    if copies == 1:
        spectrum = kmap.view(batch, rows, width, 1) * dft_weight  # (B, rows, width, 2)
    else:
        spectrum = (kmap.view(batch, copies, rows, width, 1) * dft_weight).sum(1)
    return inverse_spectrum(spectrum, size)


def spectral_synthesis_grads(
    grad: Tensor,
    kmap: Tensor,
    dft_weight: Tensor,
    index: Tensor,
    kernel_num: int,
    need_kappa: bool,
    need_dft: bool,
    scale: float = 1.0,
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of kappa (B, P * K) and dft_weight (P, rows, width, 2) from ``grad`` (B, rows, cols), that of
    :func:`spectral_synthesis` of ``scale * group_map(kappa, index, kernel_num)`` (= ``kmap``).

    The adjoint of ``irfft2`` is ``rfft2`` with the forward normalisation, the columns whose mirror lies outside
    the one-sided spectrum counted twice (torch's own rule for the c2r backward).
    """
    batch, _, cols = grad.shape
    copies, rows, width, _ = dft_weight.shape
    adjoint = torch._fft_r2c(grad, [1, 2], 2, True)  # rfft2(grad, norm="forward") less one dispatched call
    if cols > width:
        narrowed(adjoint, -1, 1, cols - width).mul_(scalar(2.0, adjoint))
    spectral = torch.view_as_real(adjoint).view(batch, 1, rows, width, 2)  # (B, 1, rows, width, 2)
    grad_kappa = grad_dft = None
    if need_kappa:
        grad_map = (spectral * dft_weight).sum(-1).view(batch * copies, rows * width)
        grad_kappa = zeroed(batch * copies, kernel_num, dtype=kmap.dtype, device=kmap.device)
        # index_add_ with an alpha takes a per-index loop, 17x slower at 1536 x 769 coefficients here; without one it
        # is a scatter_add_, and the scale goes onto the (B * P, K) sums
        grad_kappa = grad_kappa.index_add_(1, index, grad_map)
        if scale != 1.0:
            grad_kappa.mul_(scalar(scale, grad_kappa))
        grad_kappa = grad_kappa.view(batch, copies * kernel_num)
    if need_dft:
        grad_dft = (kmap.view(batch, copies, rows, width, 1) * spectral).sum(0)
    return grad_kappa, grad_dft
