"""The box low-passes of Frequency Band Modulation (FBM, FDConv §3.3) and their size-dependent operators.

Band j lies between two box low-passes on the ``rfft2`` grid of the input, cut-offs c_j = 0.5 / k_j cycles
per pixel, widest first. With L_0 = x and L_j the low-passed map, the output is
sum_j a_j * (L_{j-1} - L_j) + L_last, which telescopes to x when every a_j = 1 (the zero-initialised state).

Two mask rules (``masks``):

* ``'official'`` (default; the authors' code, so their checkpoints compute their function): masks
  max(|fy|, |fx|) < 0.5 / k + 1e-8 are evaluated in float32 on a 64 x 64 grid (rfft grid 64 x 33), so the
  k = 2 edge |f| = 0.25 is excluded (0.25 + 1e-8 rounds to 0.25) while the 0.125 and 0.0625 edges are
  included, and nearest-resized (``F.interpolate``) to the input's (H, W // 2 + 1) grid at run time.
* ``'exact'``: the same box built at the input size in float64, every edge included.

Either mask is a product R_j(fy) C_j(fx) of a row mask and a column mask; the column mask keeps a prefix of
the rfft frequencies. The low-pass is then linear and separable: along W, the kept columns span a real
orthonormal Fourier basis V_j (DC, cos 1, sin 1, ...), and along H the mask gives the complex circulant
A_j = F^-1 diag(R_j) F. A resized official row mask need not be symmetric in +-f, so A_j need not be real:
with A_j = Re A_j + i Im A_j, and since the inverse real FFT along W is real-linear,

    L_j = Re(A_j) x Q_j + Im(A_j) x S_j,   Q_j: v -> irfft(C_j rfft(v)),   S_j: v -> irfft(C_j i rfft(v)),

where S_j = V_j J_j V_j^T, J_j the quarter turn (cos i -> -sin i, sin i -> cos i) that vanishes at DC and
Nyquist (the imaginary parts the inverse FFT discards there). With one attention group the forward pass
never builds the low-passed maps: with c_j the coefficient of L_j, row h of sum_j c_j * L_j is
sum_j (T_j[h]) (V_j^T * c_j[h]) with T_j = Re(A_j) (x V_j) + Im(A_j) (x V_j J_j^T), a batched matmul over
the rows per band, accumulated in place (with several groups each L_j is built and weighted). The work
runs channels-last, where both transforms are matmuls over pixel rows. This equals the FFT definition for
any H, W, works in any dtype and device, and exports to ONNX without FFT operators. Its cost per value grows with
H + W and its op count with the bands; eager FBM takes :func:`fft_band_modulation`, the same low-passes for all
bands at once by FFTs pruned to the kept frequencies (O(log HW) per value, a fixed short sequence of ops).
"""

from __future__ import annotations

import functools
import math
import struct
from typing import Generic, NamedTuple, TypeVar, cast

import numpy as np
import torch
from torch import Tensor

from .._common.device_dtype import inserted, narrowed, normal_tensors, scalar, selected, swapped
from .._common.program_mode import compiling, compute_dtype, exporting, may_use_custom_kernels
from .._common.second_order import differentiable_backward, plain_grads

MASK_RULES = ("official", "exact")
M = TypeVar("M", Tensor, np.ndarray)
OFFICIAL_MASK_GRID = 64


def _f32(value: float) -> float:
    """``value`` rounded to the nearest float32."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _nearest_source(dst: int, size_in: int, size_out: int) -> int:
    """Source index of ``F.interpolate(mode='nearest')``: min(floor(dst * float32(in / out)), in - 1) in float32."""
    if size_in == size_out:
        return dst
    return min(math.floor(_f32(dst * _f32(size_in / size_out))), size_in - 1)


def _official_grid_masks(k: int) -> tuple[list[bool], list[bool]]:
    """The official row (64) and column (33) masks of cut-off 0.5 / k on the 64 x 64 rfft grid, before resizing:
    |fftfreq(64)| and rfftfreq(64) are exact in float32, the threshold 0.5 / k + 1e-8 is rounded to float32.
    """
    n, limit = OFFICIAL_MASK_GRID, _f32(0.5 / k + 1e-8)
    return [min(r, n - r) / n < limit for r in range(n)], [c / n < limit for c in range(n // 2 + 1)]


def _mask_lists(
    height: int, width: int, k_list: tuple[int, ...], rule: str
) -> tuple[list[list[bool]], list[list[bool]]]:
    n_cols = width // 2 + 1
    rows, cols = [], []
    for k in k_list:
        if rule == "exact":
            limit = 0.5 / k + 1e-8
            rows.append([min(r, height - r) / height < limit for r in range(height)])
            cols.append([c / width < limit for c in range(n_cols)])
            continue
        n = OFFICIAL_MASK_GRID
        grid_rows, grid_cols = _official_grid_masks(k)
        rows.append([grid_rows[_nearest_source(r, n, height)] for r in range(height)])
        cols.append([grid_cols[_nearest_source(c, n // 2 + 1, n_cols)] for c in range(n_cols)])
    return rows, cols


def band_masks(height: int, width: int, k_list: tuple[int, ...], rule: str = "official") -> tuple[Tensor, Tensor]:
    """Row masks (n, H) and column masks (n, W // 2 + 1), bool, of the box low-passes on x's rfft2 grid.

    Mask j keeps coefficient (r, c) of ``rfft2(x)`` iff ``rows[j, r] & cols[j, c]``. Computed in plain
    Python (float32 arithmetic emulated by rounding), so it costs nothing to trace or compile.
    """
    if rule not in MASK_RULES:
        raise ValueError(f"fbm_masks must be one of {MASK_RULES}, got {rule!r}")
    rows, cols = _mask_lists(height, width, k_list, rule)
    return torch.tensor(rows, dtype=torch.bool), torch.tensor(cols, dtype=torch.bool)


def real_fourier_basis(size: int, kept: int) -> np.ndarray:
    """(size, r) float64 orthonormal basis of the real signals whose rfft is zero beyond index ``kept - 1``.

    Columns DC, cos 1, sin 1, cos 2, ... (a single cos at Nyquist), so a smaller ``kept`` gives a prefix.
    """
    n = np.arange(size, dtype=np.float64)
    columns = [np.full(size, 1.0 / math.sqrt(size))]
    for i in range(1, kept):
        if 2 * i == size:
            columns.append(np.cos(math.pi * n) / math.sqrt(size))
        else:
            angle = 2.0 * math.pi * i * n / size
            columns += [np.cos(angle) * math.sqrt(2.0 / size), np.sin(angle) * math.sqrt(2.0 / size)]
    return np.stack(columns, axis=1)


class BandPlan(NamedTuple, Generic[M]):
    """Input-size-dependent constants of :class:`FrequencyBandModulation`, one entry per cut-off j.

    ``M`` is the matrix type: ``Tensor`` for the operators in use, ``np.ndarray`` while building them.
    """

    proj_h: tuple[M, ...]  # Re(A_j) (H, H)
    quad_h: tuple[M | None, ...]  # Im(A_j) (H, H); None for a row mask symmetric in +-f
    turn_w: tuple[M | None, ...]  # J_j (w_j, w_j), with quad_h[j]
    basis_w: M  # (W, Rw): basis of the widest band along W; band j uses its first widths[j] columns
    widths: tuple[int, ...]


def band_plan(
    height: int, width: int, k_list: tuple[int, ...], rule: str, dtype: torch.dtype, device: torch.device
) -> BandPlan[Tensor]:
    """Operators of the low-passes at size (height, width) in ``dtype`` on ``device``.

    They depend on the size only, never on weights, so they cannot go stale: they are built once per size
    in float64 with numpy and kept in bounded caches (constants to ``torch.jit.trace`` and ``torch.export``;
    while tracing or exporting they are converted afresh, so no traced tensor is ever cached).
    ``torch.compile`` never sees them: it calls :func:`stacked_low_passes`, an opaque operator.
    """
    key = (int(height), int(width), tuple(k_list), rule)
    if compiling() or exporting():
        return _as_tensors(_band_arrays(*key), dtype, torch.device(device))
    return _band_tensors(*key, dtype, torch.device(device))


@functools.lru_cache(maxsize=32)
def _band_tensors(
    height: int, width: int, k_list: tuple[int, ...], rule: str, dtype: torch.dtype, device: torch.device
) -> BandPlan[Tensor]:
    with normal_tensors():
        return _as_tensors(_band_arrays(height, width, k_list, rule), dtype, device)


def _as_tensors(arrays: BandPlan[np.ndarray], dtype: torch.dtype, device: torch.device) -> BandPlan[Tensor]:
    def tensor(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    def optional(a: np.ndarray | None) -> Tensor | None:
        return None if a is None else tensor(a)

    return BandPlan(
        tuple(tensor(p) for p in arrays.proj_h),
        tuple(optional(q) for q in arrays.quad_h),
        tuple(optional(t) for t in arrays.turn_w),
        tensor(arrays.basis_w),
        arrays.widths,
    )


@functools.lru_cache(maxsize=32)
def _band_arrays(height: int, width: int, k_list: tuple[int, ...], rule: str) -> BandPlan[np.ndarray]:
    """The :class:`BandPlan` as float64 numpy arrays."""
    rows, cols = _mask_lists(height, width, k_list, rule)
    kept = [sum(c) for c in cols]
    if any(not all(c[:n]) for c, n in zip(cols, kept, strict=True)):
        raise AssertionError("FBM column masks must keep a prefix of the rfft frequencies")
    basis = real_fourier_basis(width, max(kept))
    widths = tuple(basis.shape[1] - sum(2 if 2 * i != width else 1 for i in range(n, max(kept))) for n in kept)
    spectra = np.fft.fft(np.eye(height), axis=0, norm="ortho")
    proj: list[np.ndarray] = []
    quad: list[np.ndarray | None] = []
    turn: list[np.ndarray | None] = []
    for row, w, n in zip(rows, widths, kept, strict=True):
        circulant = np.fft.ifft(np.asarray(row, dtype=np.float64)[:, None] * spectra, axis=0, norm="ortho")
        proj.append(circulant.real)
        if row == [row[-r] for r in range(height)]:  # symmetric in +-f: A_j is real
            quad.append(None)
            turn.append(None)
            continue
        quad.append(circulant.imag)
        v = basis[:, :w]
        keep = (np.arange(width // 2 + 1) < n)[:, None]
        quarter = np.fft.irfft(1j * keep * np.fft.rfft(v, axis=0), n=width, axis=0)
        turn.append(np.round(v.T @ quarter))
    return BandPlan(tuple(proj), tuple(quad), tuple(turn), basis, widths)


def filter_rows(plan: BandPlan[Tensor], rows: Tensor) -> list[Tensor]:
    """T_j = Re(A_j) (x V_j) + Im(A_j) (x V_j J_j^T) from rows = x V (B, H, Rw, C): (B, H, w_j, C) per band."""
    batch, height, _, channels = rows.shape
    out = []
    for proj, quad, turn, w in zip(plan.proj_h, plan.quad_h, plan.turn_w, plan.widths, strict=True):
        part = rows[:, :, :w]
        t = torch.matmul(proj, part.reshape(batch, height, w * channels))
        if quad is not None and turn is not None:
            t = t + torch.matmul(quad, torch.matmul(turn, part).reshape(batch, height, w * channels))
        out.append(t.reshape(batch, height, w, channels))
    return out


@functools.lru_cache(maxsize=32)
def _spectral_masks(
    height: int, width: int, k_list: tuple[int, ...], rule: str, dtype: torch.dtype, device: torch.device, columns: bool
) -> Tensor:
    """Masks (n, 1, H, kept) of the low-passes on the first ``kept`` rfft columns, those of the widest band (the
    column masks are prefixes), as the complex dtype of the spectrum of a ``dtype`` map (float32 or float64): a real
    mask would be converted on every product. The unit dim broadcasts over the channels of a group. ``columns``:
    transposed and contiguous, (n, 1, kept, H), for :func:`_columns`.
    """
    rows, cols = _mask_lists(height, width, k_list, rule)
    kept = max(sum(c) for c in cols)
    masks = [[[[r and c for c in col[:kept]] for r in row]] for row, col in zip(rows, cols, strict=True)]
    with normal_tensors():
        out = torch.tensor(masks, dtype=dtype, device=device).to(
            torch.complex128 if dtype == torch.float64 else torch.complex64
        )
        return out.mT.contiguous() if columns else out


def _pruned_spectrum(x: Tensor, kept: int) -> Tensor:
    """(..., H, W) -> (..., H, kept): the first ``kept`` columns of rfft2. One 2-D transform dispatches 11 calls
    where an rfft along W, a slice and an FFT along H over the kept columns dispatch 24, and runs as fast here (MKL).
    """
    return torch.fft.rfft2(x)[..., :kept]


def _from_pruned_spectrum(spectrum: Tensor, width: int) -> Tensor:
    """(..., H, kept) -> (..., H, W): the inverse of :func:`_pruned_spectrum`, zero beyond the kept columns."""
    return torch.fft.irfft(torch.fft.ifft(spectrum, dim=-2), n=width, dim=-1)


def _band_low_passes(x: Tensor, masks: Tensor) -> Tensor:
    """x (B, G, C/G, H, W) -> its n low-passes (B, G, n, C/G, H, W) under the spectral ``masks`` (n, 1, H, kept)."""
    return _from_pruned_spectrum(inserted(_pruned_spectrum(x, masks.shape[-1]), 2) * masks, x.shape[-1])


def _half_spectrum(x: Tensor) -> Tensor:
    """(..., H, W) -> rfft2(x) (..., H, W // 2 + 1) by aten's own transform (``fft_rfft2`` dispatches it under one
    more call).
    """
    return torch._fft_r2c(x, [x.dim() - 2, x.dim() - 1], 0, True)


def _columns(spectrum: Tensor, kept: int, unit_dim: int | None = None) -> Tensor:
    """The first ``kept`` columns of a half spectrum (..., H, W // 2 + 1) as a transposed view (..., kept, H), with a
    unit dim inserted at ``unit_dim`` if given: one ``as_strided``, for tensors autograd does not record. Products
    with the transposed masks of :func:`_spectral_masks` come out contiguous along H, so that the inverse FFT along
    H transforms the last dim (MKL copies a tensor whose transformed dim is not the last one).
    """
    *lead, height, _ = spectrum.shape
    *steps, row_step, col_step = spectrum.stride()
    if unit_dim is not None:
        lead.insert(unit_dim, 1)
        steps.insert(unit_dim, 0)
    return spectrum.as_strided((*lead, kept, height), (*steps, col_step, row_step))


def _from_columns(columns: Tensor, width: int, half: Tensor | None = None) -> Tensor:
    """(..., kept, H), contiguous -> (..., H, W): the inverse of :func:`_columns`, zero beyond the kept columns: an
    inverse FFT along H (the last dim), the transpose written into a zero-filled half spectrum (into ``half``, a
    free buffer of that shape, if given), an inverse real FFT along W; aten's own transforms (normalisation 2 =
    by 1/n, as ``ifft`` and ``irfft``).
    """
    last = columns.dim() - 1
    rows = torch._fft_c2c(columns, [last], 2, False)
    *lead, kept, height = rows.shape
    full = width // 2 + 1
    if half is None:
        half = torch.empty((*lead, height, full), dtype=rows.dtype, device=rows.device)
    narrowed(half, last, kept, full - kept).fill_(0)
    narrowed(half, last, 0, kept).copy_(swapped(rows))
    return torch._fft_c2r(half, [last], 2, width)


def _column_low_passes(x: Tensor, masks: Tensor) -> Tensor:
    """:func:`_band_low_passes` under the transposed ``masks`` (n, 1, kept, H), for tensors autograd does not
    record.
    """
    return _from_columns(masks * _columns(_half_spectrum(x), masks.shape[-2], 2), x.shape[-1])


def band_coefficients(att: Tensor, dim: int, strided: bool = False) -> Tensor:
    """The coefficients of the low-passes L_1 .. L_n from the band attentions a_1 .. a_n along ``dim``: a_{j+1} - a_j,
    and 1 - a_n for the last (sum_j a_j (L_{j-1} - L_j) + L_n = a_1 x + sum_j coefficient_j L_j). ``strided``:
    views by ``as_strided`` (no autograd records).
    """
    if strided:
        n = att.shape[dim]
        rest = narrowed(att, dim, 1, n - 1) - narrowed(att, dim, 0, n - 1)
        return torch.cat([rest, scalar(1.0, att) - narrowed(att, dim, n - 1, 1)], dim=dim)
    lead = (slice(None),) * (dim % att.dim())  # indexing, not narrow: the same slices with fewer dispatched ops
    rest = att[(*lead, slice(1, None))] - att[(*lead, slice(None, -1))]
    return torch.cat([rest, scalar(1.0, att) - att[(*lead, slice(-1, None))]], dim=dim)


def _band_modulation(x: Tensor, att: Tensor, coef: Tensor, lows: Tensor, strided: bool = False) -> Tensor:
    """a_1 x + sum_j coef_j L_j x from the low-passes ``lows`` (B, G, n, C/G, H, W), with ``coef`` =
    :func:`band_coefficients` of ``att``. ``strided`` (no autograd records): views by ``as_strided``, and the
    products written into ``lows`` and the band sum (two map-sized buffers fewer to allocate).
    """
    if strided:
        return lows.mul_(inserted(coef, 3)).sum(2).addcmul_(x, narrowed(att, 2, 0, 1))
    return torch.addcmul((lows * inserted(coef, 3)).sum(2), x, att[:, :, :1])


class _BandModulation(torch.autograd.Function):
    """:func:`_band_modulation` whose backward keeps only x and the attentions. Every low-pass L_j is symmetric
    (tested: its Hermitian completion is a real even filter), so the gradient of x is a_1 grad + sum_j L_j (c_j grad):
    one more batched transform with the band sum taken in the frequency domain; that of the coefficients c rebuilds
    the low-passes, and the attentions' follows from c_j = a_{j+1} - a_j, c_n = 1 - a_n in two ops. ``masks`` are
    those of the plain ops, ``columns`` the transposed ones its own transforms take.
    """

    @staticmethod
    def forward(ctx, x: Tensor, att: Tensor, masks: Tensor, columns: Tensor) -> Tensor:
        out, coef = _column_band_modulation(x, att, columns)
        ctx.save_for_backward(x, att, coef)
        ctx.masks, ctx.columns = masks, columns
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, att, coef = ctx.saved_tensors
        need_x, need_att = ctx.needs_input_grad[:2]
        if differentiable_backward():
            plain = functools.partial(_plain_band_modulation, masks=ctx.masks)
            return (*plain_grads(plain, (x, att), (need_x, need_att), [grad]), None, None)
        return (*_band_modulation_grads(grad, x, att, coef, ctx.columns, need_x, need_att), None, None)


def _column_band_modulation(x: Tensor, att: Tensor, columns: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`_band_modulation` of x under the transposed masks ``columns``, for tensors autograd does not record,
    and the coefficients it used.
    """
    coef = band_coefficients(att, 2, strided=True)
    return _band_modulation(x, att, coef, _column_low_passes(x, columns), strided=True), coef


def _band_modulation_grads(
    grad: Tensor, x: Tensor, att: Tensor, coef: Tensor, columns: Tensor, need_x: bool, need_att: bool
) -> tuple[Tensor | None, Tensor | None]:
    """The gradients of x and att of :class:`_BandModulation` (None where not needed) from its output's ``grad``,
    with ``coef`` the forward's :func:`band_coefficients` and ``columns`` its transposed masks.
    """
    kept, width, bands = columns.shape[-2], x.shape[-1], columns.shape[0]
    grad_x = grad_att = lows = own = None
    if need_x and need_att:  # both gradients from one forward and one inverse transform: x rides along
        # x and the band-weighted gradients side by side (B, G, n + 1, C/G, H, W)
        stacked = torch.empty((*x.shape[:2], bands + 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        own = selected(stacked, 2, 0)
        own.copy_(x)
        torch.mul(inserted(coef, 3), inserted(grad, 2), out=narrowed(stacked, 2, 1, bands))
        spectrum = _half_spectrum(stacked)
        spectra = _columns(spectrum, kept)
        # x's n low-passes and the band sum of the weighted gradients, written side by side (a complex cat
        # dispatches a narrow and a copy per part)
        filtered = torch.empty(
            (*spectra.shape[:2], bands + 1, *spectra.shape[3:]), dtype=spectra.dtype, device=spectra.device
        )
        torch.mul(columns, narrowed(spectra, 2, 0, 1), out=narrowed(filtered, 2, 0, bands))
        torch.sum(columns * narrowed(spectra, 2, 1, bands), 2, keepdim=True, out=narrowed(filtered, 2, bands, 1))
        spatial = _from_columns(filtered, width, spectrum)  # (B, G, n + 1, C/G, H, W); the spectrum is free now
        lows, back = narrowed(spatial, 2, 0, bands), selected(spatial, 2, bands)
    elif need_x:
        weighted = inserted(coef, 3) * inserted(grad, 2)  # (B, G, n, C/G, H, W)
        back = _from_columns((columns * _columns(_half_spectrum(weighted), kept)).sum(2), width)
    elif need_att:
        lows = _column_low_passes(x, columns)
    if need_att:  # the terms of a_1 x and of the coefficients' L_j x side by side (B, G, n + 1, H, W)
        terms = torch.empty((*grad.shape[:2], bands + 1, *grad.shape[3:]), dtype=grad.dtype, device=grad.device)
        gate = grad * x if own is None else own.mul_(grad)  # x's copy is free after the transform
        torch.sum(gate, 2, keepdim=True, out=narrowed(terms, 2, 0, 1))
        torch.sum(cast(Tensor, lows).mul_(inserted(grad, 2)), 3, out=narrowed(terms, 2, 1, bands))
        grad_att = narrowed(terms, 2, 0, bands) - narrowed(terms, 2, 1, bands)  # c_j = a_{j+1} - a_j, c_n = 1 - a_n
    if need_x:
        grad_x = torch.addcmul(back, grad, narrowed(att, 2, 0, 1))
    return grad_x, grad_att


def _plain_band_modulation(x: Tensor, att: Tensor, masks: Tensor) -> Tensor:
    """:func:`_band_modulation` as plain differentiable ops (traces, ``torch.func``, and a backward that is
    differentiated again).
    """
    return _band_modulation(x, att, band_coefficients(att, 2), _band_low_passes(x, masks))


def fft_band_modulation(x: Tensor, att: Tensor, k_list: tuple[int, ...], rule: str) -> Tensor:
    """a_1 x + sum_j c_j L_j x (``c`` = :func:`band_coefficients`) for x (B, G, C/G, H, W) (float32 or float64) and
    the band attentions ``att`` (B, G, n, H, W): (B, G, C/G, H, W).

    ``L_j x = irfft2(mask_j * rfft2(x))`` for all n bands at once, pruned to the kept frequencies: one rfft2 (the
    widest band's columns kept), one masked product, one batched inverse FFT along H and inverse real FFT along W
    (zero-filled beyond the kept columns; faster than irfft2, which transforms every column), one weighted sum; the
    Function takes the kept columns transposed, so that its FFT along H runs on the last dim. A fixed sequence of
    ops for any batch, size and band count; O(log HW) per value. Autograd keeps only x and the attentions (its
    backward rebuilds the low-passes), except under ``torch.func`` transforms and traces, which differentiate the
    plain ops. Compiled, it is one operator (:func:`band_modulation_operator`).
    """
    if compiling():
        return band_modulation_operator(x, att, list(k_list), rule)
    masks, columns = _masks_of(x, k_list, rule)
    if may_use_custom_kernels():
        return _BandModulation.apply(x, att, masks, columns)
    return _plain_band_modulation(x, att, masks)


def _masks_of(x: Tensor, k_list: tuple[int, ...] | list[int], rule: str) -> tuple[Tensor, Tensor]:
    """The spectral masks of x's size for the plain ops and, transposed, for :class:`_BandModulation`'s transforms."""
    height, width = x.shape[-2:]
    key = (int(height), int(width), tuple(k_list), rule, x.dtype, x.device)
    return _spectral_masks(*key, columns=False), _spectral_masks(*key, columns=True)


@torch.library.custom_op("freqdyn::fbm_band_modulation", mutates_args=())
def band_modulation_operator(x: Tensor, att: Tensor, k_list: list[int], rule: str) -> Tensor:
    """:func:`fft_band_modulation` as one operator, for ``torch.compile``: inductor keeps it opaque, so it runs the
    eager FFTs (inductor has no complex codegen) at any batch and map size, without a recompile per size, and
    autograd keeps only x and the attentions, as :class:`_BandModulation` does.
    """
    return _column_band_modulation(x, att, _masks_of(x, k_list, rule)[1])[0]


@band_modulation_operator.register_fake
def _(x: Tensor, att: Tensor, k_list: list[int], rule: str) -> Tensor:
    return x.new_empty(x.shape)


@torch.library.custom_op("freqdyn::fbm_band_modulation_backward", mutates_args=())
def band_modulation_operator_backward(
    grad: Tensor, x: Tensor, att: Tensor, k_list: list[int], rule: str, need: list[bool]
) -> list[Tensor]:
    """The gradients of x and att of :func:`band_modulation_operator`; an empty tensor in place of one ``need``
    leaves out.
    """
    columns = _masks_of(x, k_list, rule)[1]
    grads = _band_modulation_grads(grad, x, att, band_coefficients(att, 2, strided=True), columns, *need)
    return [like.new_empty(0) if g is None else g for g, like in zip(grads, (x, att), strict=True)]


@band_modulation_operator_backward.register_fake
def _(grad: Tensor, x: Tensor, att: Tensor, k_list: list[int], rule: str, need: list[bool]) -> list[Tensor]:
    return [like.new_empty(like.shape if n else (0,)) for n, like in zip(need, (x, att), strict=True)]


def _save_band_inputs(ctx, inputs: tuple, output: Tensor) -> None:
    x, att, ctx.k_list, ctx.rule = inputs
    ctx.save_for_backward(x, att)


def _band_operator_backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
    x, att = ctx.saved_tensors
    need = [bool(n) for n in ctx.needs_input_grad[:2]]
    if differentiable_backward():
        plain = functools.partial(_plain_band_modulation, masks=_masks_of(x, ctx.k_list, ctx.rule)[0])
        return (*plain_grads(plain, (x, att), need, [grad]), None, None)
    grad_x, grad_att = band_modulation_operator_backward(grad, x, att, ctx.k_list, ctx.rule, need)
    return grad_x if need[0] else None, grad_att if need[1] else None, None, None


band_modulation_operator.register_autograd(_band_operator_backward, setup_context=_save_band_inputs)


def low_passes(x: Tensor, k_list: tuple[int, ...], rule: str) -> list[Tensor]:
    """Low-passed copies L_j x of x (B, C, H, W), one per cut-off, widest first, in x's dtype."""
    _, _, height, width = x.shape
    work = compute_dtype(x.dtype)
    with torch.autocast(x.device.type, enabled=False):
        return _apply(x, band_plan(height, width, k_list, rule, work, x.device))


def _apply(x: Tensor, plan: BandPlan[Tensor]) -> list[Tensor]:
    rows = (x.to(plan.basis_w.dtype).transpose(1, 2) @ plan.basis_w).transpose(2, 3)  # x V: (B, H, Rw, C)
    parts = filter_rows(plan, rows)
    return [
        (plan.basis_w[:, :w] @ part).permute(0, 3, 1, 2).to(x.dtype) for part, w in zip(parts, plan.widths, strict=True)
    ]


def _transposed_band(plan: BandPlan[Tensor], j: int) -> BandPlan[Tensor]:
    """The plan of L_j^T alone: with L_j X = P X V V^T + Q X V J^T V^T per channel, P, Q and J transposed."""
    quad, turn = plan.quad_h[j], plan.turn_w[j]
    return BandPlan(
        (plan.proj_h[j].t(),),
        (None if quad is None else quad.t(),),
        (None if turn is None else turn.t(),),
        plan.basis_w,
        (plan.widths[j],),
    )


@torch.library.custom_op("freqdyn::fbm_low_passes", mutates_args=())
def stacked_low_passes(x: Tensor, k_list: list[int], rule: str) -> Tensor:
    """(B, C, H, W) -> (n, B, C, H, W): :func:`low_passes` as one operator.

    ``torch.compile`` treats it as opaque, so the size-dependent operators are built outside the graph and
    the batch and spatial sizes stay dynamic (no recompilation per size, no graph break).
    """
    return torch.stack(low_passes(x, tuple(k_list), rule)).contiguous()


@stacked_low_passes.register_fake
def _(x: Tensor, k_list: list[int], rule: str) -> Tensor:
    return x.new_empty((len(k_list), *x.shape))


@torch.library.custom_op("freqdyn::fbm_low_passes_adjoint", mutates_args=())
def low_passes_adjoint(grad: Tensor, k_list: list[int], rule: str) -> Tensor:
    """(n, B, C, H, W) -> (B, C, H, W): sum_j L_j^T grad_j, the gradient of :func:`stacked_low_passes`."""
    height, width = grad.shape[-2:]
    with torch.autocast(grad.device.type, enabled=False):
        plan = band_plan(height, width, tuple(k_list), rule, compute_dtype(grad.dtype), grad.device)
        parts = [_apply(g, _transposed_band(plan, j))[0] for j, g in enumerate(grad.unbind(0))]
    return torch.stack(parts).sum(0)


@low_passes_adjoint.register_fake
def _(grad: Tensor, k_list: list[int], rule: str) -> Tensor:
    return grad.new_empty(grad.shape[1:])


def _setup_context(ctx, inputs: tuple, output: Tensor) -> None:
    ctx.k_list, ctx.rule = inputs[1], inputs[2]


def _backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
    return low_passes_adjoint(grad, ctx.k_list, ctx.rule), None, None


stacked_low_passes.register_autograd(_backward, setup_context=_setup_context)


def _graph_mask(size: Tensor, count: int, k: int, rule: str, axis: str) -> Tensor:
    """The row (``axis='h'``: ``count`` = H entries) or column (``'w'``: W // 2 + 1 entries) mask of cut-off 0.5 / k
    on x's rfft2 grid (``size`` = H or W as a float64 scalar), float64, from tensor ops only, so that a trace or an
    export keeps the size symbolic. As :func:`_mask_lists`: ``'exact'`` evaluates the box at the size;
    ``'official'`` evaluates it in float32 on the 64 x 64 grid and nearest-resizes it (source index
    min(floor(dst * float32(in / out)), in - 1), in float32, as ``F.interpolate``).
    """
    index = torch.arange(count, dtype=torch.float64, device=size.device)
    if rule == "exact":
        freq = torch.minimum(index, size - index) / size if axis == "h" else index / size
        return (freq < 0.5 / k + 1e-8).to(torch.float64)
    grid_mask = _official_grid_masks(k)[0 if axis == "h" else 1]
    scale = (len(grid_mask) / torch.full_like(size, count)).to(torch.float32)
    source = torch.floor(index.to(torch.float32) * scale).clamp(max=len(grid_mask) - 1).long()
    return torch.tensor(grid_mask, dtype=torch.float64, device=size.device)[source]


def _cos_sin(rows: int, size: Tensor, cols: int) -> tuple[Tensor, Tensor]:
    """cos and sin of 2 pi r n / size for r < rows, n < cols (the phase reduced mod size first), float64."""
    r = torch.arange(rows, dtype=torch.float64, device=size.device)[:, None]
    n = torch.arange(cols, dtype=torch.float64, device=size.device)[None, :]
    angle = torch.remainder(r * n, size) * (2.0 * math.pi / size)
    return torch.cos(angle), torch.sin(angle)


def graph_low_passes(x: Tensor, k_list: tuple[int, ...], rule: str) -> Tensor:
    """(B, C, H, W) -> (n, B, C, H, W): the low-passes of :func:`low_passes`, with every operator built in the graph
    from x's shape (float64, then x's dtype), so that a trace or an ONNX / ``torch.export`` graph runs at any H, W.

    L_j x = Re(A_j) x Q_j + Im(A_j) x S_j per channel: along H the circulant A_j = F^-1 diag(R_j) F (rows r), so
    Re(A_j) = (C^T R C + S^T R S) / H and Im(A_j) = (S^T R C - C^T R S) / H with C, S the cos / sin of 2 pi r n / H;
    along W, Q_j = irfft(M_j rfft(.)) = (Cw^T D_j Cw + Sw^T D_j Sw) / W with D_j the column mask weighted 1 at DC and
    Nyquist and 2 between, and S_j = irfft(M_j i rfft(.)) = (Sw^T E_j Cw - Cw^T E_j Sw) / W, E_j the column mask
    weighted 2 strictly between DC and Nyquist (irfft drops the imaginary parts there). O(H + W) per value: the
    export route, never the eager one.
    """
    height, width = x.shape[-2], x.shape[-1]
    cols = width // 2 + 1
    h = torch.full((), height, dtype=torch.float64, device=x.device)
    w = torch.full((), width, dtype=torch.float64, device=x.device)
    c_h, s_h = _cos_sin(height, h, height)  # (H, H): [r, n]
    c_w, s_w = _cos_sin(cols, w, width)  # (W // 2 + 1, W): [c, n]
    index = torch.arange(cols, dtype=torch.float64, device=x.device)[:, None]
    inner = ((index > 0) & (2 * index < w)).to(torch.float64)  # 0 < c < W / 2
    work = compute_dtype(x.dtype)
    xw = x.to(work)
    lows = []
    for k in k_list:
        rows = _graph_mask(h, height, k, rule, "h")[:, None]
        mask = _graph_mask(w, cols, k, rule, "w")[:, None]
        dc_nyquist, between = (1.0 + inner) * mask, 2.0 * inner * mask
        re_a = (c_h.t() @ (rows * c_h) + s_h.t() @ (rows * s_h)) / h
        im_a = (s_h.t() @ (rows * c_h) - c_h.t() @ (rows * s_h)) / h
        q = (c_w.t() @ (dc_nyquist * c_w) + s_w.t() @ (dc_nyquist * s_w)) / w
        s = (s_w.t() @ (between * c_w) - c_w.t() @ (between * s_w)) / w
        lows.append(re_a.to(work) @ xw @ q.to(work) + im_a.to(work) @ xw @ s.to(work))
    return torch.stack(lows).to(x.dtype)
