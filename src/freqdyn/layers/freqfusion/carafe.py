"""CARAFE-style reassembly (Wang et al., ICCV 2019) in pure PyTorch, without the k*k-times unfold tensor.

Every output pixel (i, j) is a weighted sum of the k x k neighbourhood of its source pixel
(i // scale, j // scale) in x, with per-pixel, per-group weights. The reference formulation unfolds x into
(B, C * k * k, H, W) and upsamples that; here the input is laid out channels-last with its padded rows read as
one sequence of pixels, so that each kernel row of every pixel's neighbourhood is a strided view of it (no
copy), and one batched matmul per kernel row multiplies those views with the pixels' k x scale**2 taps. The op
count depends on k only (not on the batch, the channels or the map), and autograd keeps only the two inputs:
the backward gathers each row's gradient through one more strided view.

Borders: ``padding='zeros'`` (default) is mmcv's ``carafe`` op, which the authors' released FreqFusion
models use: taps outside the map contribute nothing. ``padding='reflect'`` reflects the map, as the
mmcv-less fallback in the FreqFusion source does.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from .._common.flop_record import record_flops
from .._common.program_mode import may_overwrite, may_use_custom_kernels

PADDINGS = ("zeros", "reflect")


def _pad_mode(size: int, pad: int) -> str:
    return "reflect" if pad < size else "replicate"  # reflection needs pad < size


def pad_neighbourhood(x: Tensor, pad: int, padding: str = "zeros", extra_row: bool = False) -> Tensor:
    """Pad the last two dims by ``pad``: zeros, or reflection (replicate along a dim too small to reflect);
    ``extra_row`` adds one zero row at the bottom.
    """
    extra = int(extra_row)
    if padding == "zeros" or pad == 0:
        return F.pad(x, [pad, pad, pad, pad + extra])
    mode_h, mode_w = _pad_mode(x.shape[-2], pad), _pad_mode(x.shape[-1], pad)
    if mode_h == mode_w:
        x = F.pad(x, [pad] * 4, mode=mode_h)
    else:
        x = F.pad(F.pad(x, [0, 0, pad, pad], mode=mode_h), [pad, pad, 0, 0], mode=mode_w)
    return F.pad(x, [0, 0, 0, extra]) if extra else x


def source_size(out_size: tuple[int, int], size: tuple[int, int], scale: int) -> tuple[int, int]:
    """Size of the (edge-extended) source map that an ``out_size`` output at ``scale`` reads: ceil(out / scale).

    An exact multiple gives the input size itself, in integer arithmetic: under ``torch.compile`` the sizes then
    stay plain symbols, whose strides inductor can order (it cannot for a ceiling of a symbolic ratio).
    """
    need = cast(
        tuple[int, int], tuple(s if o == scale * s else -(-o // scale) for o, s in zip(out_size, size, strict=True))
    )
    for o, s in zip(out_size, size, strict=True):
        if not scale * s - (scale - 1) <= o <= scale * s + (scale - 1):
            raise ValueError(f"output size {out_size} is not {scale}x the input size {size} (up to rounding)")
    return need


def check_kernels(x: Tensor, kernels: Tensor, kernel_size: int, groups: int, padding: str = "zeros") -> None:
    """A ``ValueError`` unless x (B, C, h, w) and kernels (B, groups * k * k, Ho, Wo) fit :func:`carafe`'s call."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if x.shape[1] % groups:
        raise ValueError(f"{x.shape[1]} channels cannot be split into {groups} groups")
    if kernels.dim() != 4 or kernels.shape[0] != x.shape[0] or kernels.shape[1] != groups * kernel_size**2:
        raise ValueError(
            f"kernels must be (B={x.shape[0]}, groups*k*k={groups * kernel_size**2}, H, W), got {tuple(kernels.shape)}"
        )


def _row_stride(base: Tensor) -> int:
    """Pixels between two rows of base (h + 2p + 1, B*G, w + 2p, C/G) read as one sequence of pixels."""
    return base.shape[1] * base.shape[2]


def _neighbour_rows(base: Tensor, k: int, pixels: int) -> list[Tensor]:
    """The k kernel rows of every pixel's neighbourhood, each a strided view (pixels, C/G, k) of base
    (h + 2p + 1, B*G, w + 2p, C/G) read as one sequence of pixels: row a of pixel (y, g, x) is the run of k pixels
    from (y + a) * B*G*(w + 2p) + g * (w + 2p) + x. For x >= w a run wraps into the next padded row (ignored), and
    the extra bottom row keeps the last row's runs inside the tensor.
    """
    windows, stride = base.reshape(-1, base.shape[-1]).unfold(0, k, 1), _row_stride(base)
    return [windows[row * stride : row * stride + pixels] for row in range(k)]


def _pixel_bmm(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``torch.bmm`` of the small per-pixel matrices a (N, i, j) and b (N, j, l). With j == 1 or l == 1 (scale 1)
    a broadcast product runs several times faster than bmm's one call per matrix.
    """
    if a.shape[-1] == 1:
        return torch.mul(a, b, out=out)
    if b.shape[-1] == 1:  # the product written (N, j, i), so that the sum runs over whole rows of i (left to
        # itself, the product of a strided view takes a layout that runs four times slower)
        written = a.new_empty(a.shape[0], a.shape[2], a.shape[1]) if may_overwrite() else None  # autograd: no out=
        product = a.transpose(1, 2) * b if written is None else torch.mul(a.transpose(1, 2), b, out=written)
        return product.sum(1, keepdim=True).transpose(1, 2)
    return torch.bmm(a, b, out=out)


def _reassemble(base: Tensor, taps: Tensor, k: int) -> Tensor:
    """base (h + 2p + 1, B*G, w + 2p, C/G), taps (h*B*G*(w + 2p), k*k, s*s) -> (h*B*G*(w + 2p), C/G, s*s).

    One batched matmul per kernel row, over the pixels: each pixel's (C/G, k) row of neighbours, a strided view of
    ``base`` (no copy), times its (k, s*s) taps. The op count grows with k alone, never with the batch or the map.
    """
    rows, in_place = _neighbour_rows(base, k, taps.shape[0]), may_overwrite()
    out = _pixel_bmm(rows[0], taps[:, :k])
    for row in range(1, k):
        part = _pixel_bmm(rows[row], taps[:, row * k : (row + 1) * k])
        out = out.add_(part) if in_place else out + part
    return out


def _reassemble_backward(
    base: Tensor, taps: Tensor, grad: Tensor, k: int, need_base: bool, need_taps: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of :func:`_reassemble` for base and taps from ``grad`` (pixels, C/G, s*s), contiguous: a fixed
    number of ops per kernel row.
    """
    stride, pixels = _row_stride(base), taps.shape[0]
    grad_taps = None
    if need_taps:
        grad_taps = torch.cat(
            [_pixel_bmm(row.transpose(1, 2), grad) for row in _neighbour_rows(base, k, pixels)], dim=1
        )
    if not need_base:
        return None, grad_taps
    # base pixel m gets sum_t spread[m - row * stride - t, :, t] from each row, spread = grad x taps^T. With the
    # taps reversed (t' = k - 1 - t) and k - 1 zero pixels either side, that sum is one strided view's sum
    channels = base.shape[-1]
    flipped = taps.reshape(pixels, k, k, -1).flip(2).transpose(2, 3)  # (pixels, k rows, s*s, k reversed)
    spread = grad.new_zeros(pixels + 2 * (k - 1), channels, k)
    gather = spread.as_strided((pixels + k - 1, channels, k), (channels * k, k, channels * k + 1))
    grad_base = base.new_zeros(base.shape).reshape(-1, channels)
    for row in range(k):
        _pixel_bmm(grad, flipped[:, row], out=spread[k - 1 : k - 1 + pixels])
        grad_base[row * stride : row * stride + pixels + k - 1] += gather.sum(-1)
    return grad_base.reshape(base.shape), grad_taps


class _Reassemble(torch.autograd.Function):
    """:func:`_reassemble` with a backward of a fixed number of ops per kernel row that keeps only the inputs."""

    @staticmethod
    def forward(ctx, base: Tensor, taps: Tensor, k: int) -> Tensor:
        ctx.save_for_backward(base, taps)
        ctx.k = k
        with torch.no_grad():
            return _reassemble(base, taps, k)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        base, taps = ctx.saved_tensors
        # an expanded grad_out (zero strides) would make bmm go sample by sample
        grads = _reassemble_backward(base, taps, grad_out.contiguous(), ctx.k, *ctx.needs_input_grad[:2])
        return *grads, None


class _Carafe(torch.autograd.Function):
    """:func:`carafe` with zero borders and an output of exactly ``scale`` times x: the layouts in and out of
    :func:`_reassemble` inside one Function, so that autograd records one node instead of a chain of copies, slices
    and permutes, and keeps only the laid-out inputs (as :class:`_Reassemble`).
    """

    @staticmethod
    def forward(ctx, x: Tensor, kernels: Tensor, k: int, groups: int, scale: int) -> Tensor:
        batch, _, height, width = x.shape
        pad_w = width + 2 * (k // 2)
        base = _neighbourhood_base(x, groups, k // 2, "zeros")
        taps = _pixel_taps(kernels, groups, k, scale, (height, width), pad_w)
        ctx.save_for_backward(base, taps)
        ctx.k, ctx.groups, ctx.scale = k, groups, scale
        return _output_map(_reassemble(base, taps, k), batch, groups, scale, (height, width))

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        base, taps = ctx.saved_tensors
        k, groups, scale, pad = ctx.k, ctx.groups, ctx.scale, ctx.k // 2
        batch, channels = grad_out.shape[:2]
        height, width = grad_out.shape[2] // scale, grad_out.shape[3] // scale
        grad = grad_out.new_zeros(height, batch, groups, base.shape[2], channels // groups, scale, scale)
        grad[:, :, :, :width] = grad_out.view(batch, groups, channels // groups, height, scale, width, scale).permute(
            3, 0, 1, 5, 2, 4, 6
        )
        grad_base, grad_taps = _reassemble_backward(
            base, taps, grad.view(taps.shape[0], -1, scale * scale), k, *ctx.needs_input_grad[:2]
        )
        grad_x = grad_kernels = None
        if grad_base is not None:  # (h + 2p + 1, B*G, w + 2p, C/G) -> its interior as (B, C, h, w)
            inner = grad_base[pad : pad + height, :, pad : pad + width]
            grad_x = inner.permute(1, 3, 0, 2).reshape(batch, channels, height, width)
        if grad_taps is not None:  # (h * B*G * (w + 2p), k*k, s*s) -> (B, G * k*k, s*h, s*w)
            blocks = grad_taps.view(height, batch * groups, -1, k * k, scale, scale)[:, :, :width]
            grad_kernels = blocks.permute(1, 3, 0, 4, 2, 5).reshape(
                batch, groups * k * k, scale * height, scale * width
            )
        return grad_x, grad_kernels, None, None, None


def _output_map(out: Tensor, batch: int, groups: int, scale: int, source: tuple[int, int]) -> Tensor:
    """:func:`_reassemble`'s output (h*B*G*(w + 2p), C/G, s*s) -> (B, C, s*h, s*w), the wrapped columns dropped."""
    height, width = source
    rows = out.view(height, batch, groups, -1, out.shape[1], scale, scale)[:, :, :, :width]
    return rows.permute(1, 2, 4, 0, 5, 3, 6).reshape(batch, groups * out.shape[1], scale * height, scale * width)


def _neighbourhood_base(x: Tensor, groups: int, pad: int, padding: str) -> Tensor:
    """x (B, C, h, w) -> (h + 2p + 1, B*G, w + 2p, C/G): padded by ``padding`` and one more zero row, the layout whose
    neighbourhood rows are strided views (:func:`_neighbour_rows`). Zero padding writes x into zeros: one copy pads and
    changes the layout (not under export or ``torch.func``, which take the plain pad).
    """
    batch, channels, height, width = x.shape
    if padding == "zeros" and may_use_custom_kernels():
        base = x.new_zeros(height + 2 * pad + 1, batch * groups, width + 2 * pad, channels // groups)
        rows = x.reshape(batch * groups, -1, height, width).permute(2, 0, 3, 1)  # (h, B*G, w, C/G), a view
        base[pad : pad + height, :, pad : pad + width] = rows
        return base
    padded = pad_neighbourhood(x, pad, padding, extra_row=True)
    return padded.reshape(batch * groups, channels // groups, *padded.shape[-2:]).permute(2, 0, 3, 1).contiguous()


def _pixel_taps(kernels: Tensor, groups: int, k: int, scale: int, source: tuple[int, int], pad_w: int) -> Tensor:
    """kernels (B, G * k*k, Ho, Wo) -> taps (h*B*G*(w + 2p), k*k, s*s) in :func:`_reassemble`'s pixel order, zero
    beyond the output (rounded sizes) and in the wrapped columns (whose gradients would otherwise pick up garbage).
    For an output of exactly s times the source, the kernels are written into zeros (one copy).
    """
    batch, _, out_h, out_w = kernels.shape
    src_h, src_w = source
    if (out_h, out_w) == (scale * src_h, scale * src_w) and may_use_custom_kernels():
        taps = kernels.new_zeros(src_h, batch * groups, pad_w, k * k, scale, scale)
        blocks = kernels.reshape(batch * groups, k * k, src_h, scale, src_w, scale)
        taps.permute(1, 3, 0, 4, 2, 5)[..., :src_w, :] = blocks  # (B*G, k*k, h, s, w, s) view of the taps
        return taps.reshape(-1, k * k, scale * scale)
    kernels = F.pad(kernels, [0, scale * pad_w - out_w, 0, scale * src_h - out_h])
    kernels = kernels.reshape(batch * groups, k * k, src_h, scale, pad_w, scale)
    return kernels.permute(2, 0, 4, 1, 3, 5).reshape(-1, k * k, scale * scale)


def carafe(
    x: Tensor, kernels: Tensor, kernel_size: int, groups: int = 1, scale: int = 1, padding: str = "zeros"
) -> Tensor:
    """Content-aware reassembly of x (B, C, h, w) with kernels (B, groups * k * k, Ho, Wo) -> (B, C, Ho, Wo).

    ``Ho, Wo`` is ``scale * (h, w)`` up to rounding (one pixel less or more per dim); output pixel (i, j)
    reads source pixel (i // scale, j // scale) of x edge-extended to ``ceil(Ho / scale)`` rows (columns).
    Channel c uses kernel group ``c // (C // groups)``; within a group, kernel channel a * k + b weighs the
    neighbour at offset (a - k // 2, b - k // 2). Borders: ``padding`` (module docstring). Under ``torch.export`` /
    ONNX export, tracing and ``torch.func`` transforms the same rows run as plain differentiable ops.
    """
    check_kernels(x, kernels, kernel_size, groups, padding)
    batch, channels, height, width = x.shape
    out_h, out_w = kernels.shape[-2:]
    src_h, src_w = source_size((out_h, out_w), (height, width), scale)
    if (src_h, src_w) != (height, width):
        x = F.pad(x, [0, src_w - width, 0, src_h - height], mode="replicate")
    if not batch:  # no runs of pixels to view; the empty output stays joined to both inputs (zero gradients)
        return (x.sum() * 0 + kernels.sum() * 0).expand(0, channels, out_h, out_w)
    k, pad = kernel_size, kernel_size // 2
    pad_w = src_w + 2 * pad
    # the profile reports 2 k*k FLOPs per output element; FlopCounterMode also counts the matmuls (those of
    # :func:`_pixel_bmm` with k, scale > 1), which run over the 2p wrapped columns of each row too: taken off here
    counted = 2 * k * k * batch * channels * scale * scale * src_h * pad_w if k > 1 and scale > 1 else 0
    record_flops(2 * k * k * batch * channels * out_h * out_w - counted)
    custom = may_use_custom_kernels()
    if custom and padding == "zeros" and (out_h, out_w) == (scale * height, scale * width):
        return cast(Tensor, _Carafe.apply(x, kernels, k, groups, scale))
    base = _neighbourhood_base(x, groups, pad, padding)
    taps = _pixel_taps(kernels, groups, k, scale, (src_h, src_w), pad_w)
    out = _Reassemble.apply(base, taps, k) if custom else _reassemble(base, taps, k)
    return _output_map(out, batch, groups, scale, (src_h, src_w))[..., :out_h, :out_w]
