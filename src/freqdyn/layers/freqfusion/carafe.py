"""CARAFE-style reassembly (Wang et al., ICCV 2019) in pure PyTorch, without the k*k-times unfold tensor.

Every output pixel (i, j) is a weighted sum of the k x k neighbourhood of its source pixel
(i // scale, j // scale) in x, with per-pixel, per-group weights. The reference formulation unfolds x into
(B, C * k * k, H, W) and upsamples that. Here the input is laid out channels-last with its padded rows read as
one sequence of pixels, so that the k columns of a neighbourhood row are a strided view of it (no copy), and the
rows of a neighbourhood are R pixels apart (R: one padded row of the whole batch).

Training and inference (``_Carafe``, ``_Reassemble``) run one batched matmul over the pixels: each pixel's
(C/G, k) window times its taps of all k rows, each row's taps written R pixels further on (``shifted_taps``), so
that the product at pixel q holds row a's contribution to the output pixel q - a * R; one strided sum adds the k
rows. The backward is two more matmuls and two strided sums. The op count is fixed (independent of the batch, the
channels, the map and k); the price is a temporary k times the output in forward and backward (the reference's
unfold keeps k * k times the map). Autograd keeps only the laid-out input and taps. Under export, tracing and
``torch.func`` the plain route runs one matmul per kernel row as differentiable ops (:func:`_reassemble`).

Borders: ``padding='zeros'`` (default) is mmcv's ``carafe`` op, which the authors' released FreqFusion
models use: taps outside the map contribute nothing. ``padding='reflect'`` reflects the map, as the
mmcv-less fallback in the FreqFusion source does.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from .._common.device_dtype import factory_kwargs
from .._common.flop_record import record_flops
from .._common.program_mode import compiling, may_use_custom_kernels

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


def _pixel_bmm(a: Tensor, b: Tensor) -> Tensor:
    """``torch.bmm`` of the small per-pixel matrices a (N, i, j) and b (N, j, l). With j == 1 or l == 1 (scale 1)
    a broadcast product runs several times faster than bmm's one call per matrix.
    """
    if a.shape[-1] == 1:
        return a * b
    if b.shape[-1] == 1:  # the product laid out (N, j, i), so that the sum runs over whole rows of i
        return (a.transpose(1, 2) * b).sum(1, keepdim=True).transpose(1, 2)
    return torch.bmm(a, b)


def _reassemble(base: Tensor, taps: Tensor, k: int) -> Tensor:
    """base (h + 2p + 1, B*G, w + 2p, C/G), taps (h*B*G*(w + 2p), k*k, s*s) -> (h*B*G*(w + 2p), C/G, s*s).

    The plain route (export, tracing, ``torch.func``): one batched matmul per kernel row, over the pixels, of each
    pixel's (C/G, k) row of neighbours, a strided view of ``base`` (no copy), with its (k, s*s) taps, as
    differentiable ops.
    """
    rows = _neighbour_rows(base, k, taps.shape[0])
    out = _pixel_bmm(rows[0], taps[:, :k])
    for row in range(1, k):
        out = out + _pixel_bmm(rows[row], taps[:, row * k : (row + 1) * k])
    return out


def _shifted_rows(base: Tensor, k: int) -> int:
    """Rows of the shifted taps: (h + k - 1) * R, one per window that a tap of some kernel row lands on."""
    return (base.shape[0] - 2 * (k // 2) - 1 + k - 1) * _row_stride(base)


def _shifted_reassemble(base: Tensor, shifted: Tensor, k: int) -> Tensor:
    """base (h + 2p + 1, B*G, w + 2p, C/G), shifted taps (rows, k_b, k_a * s*s) -> (h*B*G*(w + 2p), C/G, s*s).

    Row q of ``shifted`` holds, in block a, the taps of kernel row a of pixel q - a * R (R = :func:`_row_stride`):
    one batched matmul of every window with them gives each row's part of the output pixel it belongs to, and one
    strided sum adds the k parts (the output includes the wrapped columns, as :func:`_reassemble`'s).
    """
    rows, channels, block = shifted.shape[0], base.shape[-1], shifted.shape[-1] // k
    stride, width = _row_stride(base), channels * shifted.shape[-1]
    windows = base.as_strided((rows, channels, k), (channels, 1, channels))
    parts = torch.bmm(windows, shifted)  # (rows, C/G, k_a * s*s)
    pixels = rows - (k - 1) * stride
    return parts.as_strided((pixels, channels, block, k), (width, k * block, 1, stride * width + block)).sum(-1)


def _shifted_reassemble_backward(
    base: Tensor, shifted: Tensor, spread_grad: Tensor, k: int, need_base: bool, need_taps: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of :func:`_shifted_reassemble` for base and the shifted taps, from ``spread_grad``
    (rows, C/G, k_a * s*s): in row p + a * R, block a, the output gradient of pixel p (zero elsewhere).
    """
    rows, channels = shifted.shape[0], base.shape[-1]
    grad_base = grad_shifted = None
    if need_taps:
        grad_shifted = torch.bmm(base.as_strided((rows, k, channels), (channels, channels, 1)), spread_grad)
    if need_base:  # base pixel m gets sum_b spread[m - b, :, b] (spread = grad x taps^T), after k - 1 zero rows
        pixels = base.numel() // channels
        spread = base.new_zeros(pixels + k - 1, channels, k)
        torch.bmm(spread_grad, shifted.transpose(1, 2), out=spread[k - 1 : k - 1 + rows])
        gather = spread.as_strided((pixels, channels, k), (channels * k, k, channels * k - 1), k - 1)
        grad_base = gather.sum(-1).view(base.shape)
    return grad_base, grad_shifted


def _pixel_tap_view(shifted: Tensor, stride: int, k: int) -> Tensor:
    """The (pixels, k_a, k_b, s*s) view of shifted taps (rows, k_b, k_a * s*s) at which each pixel's taps sit."""
    block = shifted.shape[-1] // k
    per_row = k * k * block
    pixels = shifted.shape[0] - (k - 1) * stride
    return shifted.as_strided((pixels, k, k, block), (per_row, stride * per_row + block, k * block, 1))


def _pixel_grad_view(spread_grad: Tensor, stride: int, k: int) -> Tensor:
    """The (pixels, C/G, k_a, s*s) view of ``spread_grad`` (rows, C/G, k_a * s*s) that holds pixel p's output
    gradient in row p + a * R, block a.
    """
    rows, channels, width = spread_grad.shape[0], spread_grad.shape[1], spread_grad.shape[1] * spread_grad.shape[2]
    block = spread_grad.shape[-1] // k
    pixels = rows - (k - 1) * stride
    return spread_grad.as_strided((pixels, channels, k, block), (width, k * block, stride * width + block, 1))


def _write(buffer: Tensor, target: Tensor, src: Tensor, offset: int = 0) -> Tensor:
    """``src`` written into ``target``, a strided view of ``buffer`` from element ``offset``: the buffer, written in
    place, or under ``torch.compile`` (which cannot functionalise a write into an ``as_strided`` view) a written copy
    of it.
    """
    if compiling():
        return torch.as_strided_scatter(buffer, src, target.shape, target.stride(), offset)
    target.copy_(src)
    return buffer


class _Reassemble(torch.autograd.Function):
    """:func:`_reassemble` by :func:`_shifted_reassemble`: a fixed number of ops, autograd keeps base and the
    shifted taps.
    """

    @staticmethod
    def forward(ctx, base: Tensor, taps: Tensor, k: int) -> Tensor:
        stride = _row_stride(base)
        shifted = taps.new_zeros(_shifted_rows(base, k), k, taps.shape[1] * taps.shape[2] // k)
        shifted = _write(shifted, _pixel_tap_view(shifted, stride, k), taps.view(taps.shape[0], k, k, -1))
        ctx.save_for_backward(base, shifted)
        ctx.k = k
        return _shifted_reassemble(base, shifted, k)

    @staticmethod
    @once_differentiable  # its backward reads the laid-out taps, not the input: no second derivatives
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        base, shifted = ctx.saved_tensors
        k, stride = ctx.k, _row_stride(base)
        spread_grad = grad_out.new_zeros(shifted.shape[0], base.shape[-1], shifted.shape[-1])
        view = _pixel_grad_view(spread_grad, stride, k)
        spread_grad = _write(spread_grad, view, grad_out.unsqueeze(2).expand(view.shape))
        grad_base, grad_shifted = _shifted_reassemble_backward(base, shifted, spread_grad, k, *ctx.needs_input_grad[:2])
        grad_taps = None
        if grad_shifted is not None:
            grad_taps = _pixel_tap_view(grad_shifted, stride, k).reshape(-1, k * k, shifted.shape[-1] // k)
        return grad_base, grad_taps, None


def _map_grid(t: Tensor, groups: int, scale: int, repeat: int = 0) -> Tensor:
    """The (h, B, G, w, C/G, s, s) view of a map t (B, C, s*h, s*w) of any strides: element (y, b, g, x, c, u, v) is
    t[b, g * C/G + c, s*y + u, s*x + v]. ``repeat`` > 0 inserts a dim of that size after C/G that repeats t.
    """
    batch, channels, height, width = t.shape
    sb, sc, sh, sw = t.stride()
    per_group = channels // groups
    repeated = ((repeat,), (0,)) if repeat else ((), ())
    return t.as_strided(
        (height // scale, batch, groups, width // scale, per_group, *repeated[0], scale, scale),
        (scale * sh, sb, per_group * sc, scale * sw, sc, *repeated[1], sh, sw),
    )


def _layout_grid(
    buffer: Tensor, grid: tuple[int, ...], pad_w: int, per_pixel: int, inner: tuple[int, ...], offset: int = 0
) -> Tensor:
    """The (h, B, G, w, *inner) view of a laid-out buffer whose pixels (y, b, g, x) follow each other in rows of
    B*G*(w + 2p), ``per_pixel`` elements each, from element ``offset``. ``inner`` pairs each size with its stride.
    """
    height, batch, groups, width = grid
    return buffer.as_strided(
        (height, batch, groups, width, *inner[::2]),
        (batch * groups * pad_w * per_pixel, groups * pad_w * per_pixel, pad_w * per_pixel, per_pixel, *inner[1::2]),
        offset,
    )


def _kernel_tap_view(shifted: Tensor, grid: tuple[int, ...], k: int, scale: int) -> Tensor:
    """The (B, G, k_a, k_b, h, s, w, s) view of shifted taps (rows, k_b, k_a * s*s) laid out as the kernels
    (B, G * k*k, s*h, s*w) are: kernels, or their gradient, copy in and out of it in one call.
    """
    height, batch, groups, width = grid
    block, pad_w = scale * scale, shifted.shape[0] // ((height + k - 1) * batch * groups)
    per_row, stride = k * k * block, batch * groups * pad_w
    return shifted.as_strided(
        (batch, groups, k, k, height, scale, width, scale),
        (
            groups * pad_w * per_row,
            pad_w * per_row,
            stride * per_row + block,
            k * block,
            stride * per_row,
            scale,
            per_row,
            1,
        ),
    )


def _kernel_grid(kernels: Tensor, groups: int, k: int, scale: int) -> Tensor:
    """The (B, G, k_a, k_b, h, s, w, s) view of kernels (B, G * k*k, s*h, s*w) of any strides."""
    batch, _, height, width = kernels.shape
    sb, sc, sh, sw = kernels.stride()
    return kernels.as_strided(
        (batch, groups, k, k, height // scale, scale, width // scale, scale),
        (sb, k * k * sc, k * sc, sc, scale * sh, sh, scale * sw, sw),
    )


def _channel_splits(widths: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each input's channels within a group of the joint layout."""
    splits, start = [], 0
    for width in widths:
        splits.append((start, start + width))
        start += width
    return splits


class _Carafe(torch.autograd.Function):
    """:func:`carafe_together` with zero borders and outputs of exactly ``scale`` times the inputs: the layouts in
    and out of :func:`_shifted_reassemble` inside one Function, each one strided copy, so that autograd records one
    node and keeps only the laid-out inputs. The inputs share the kernels; each group of the joint layout holds
    every input's channels of that group in turn.
    """

    @staticmethod
    def forward(
        ctx, kernels: Tensor, k: int, groups: int, scale: int, first: Tensor, second: Tensor | None
    ) -> tuple[Tensor, ...]:
        xs = (first,) if second is None else (first, second)  # (not *xs: dynamo cannot trace a Function's varargs)
        batch, _, height, width = first.shape
        pad, widths, options = k // 2, [x.shape[1] // groups for x in xs], factory_kwargs(xs[0].device, xs[0].dtype)
        pad_w, total, grid = width + 2 * pad, sum(widths), (height, batch, groups, width)
        splits = _channel_splits(widths)
        base = torch.zeros(height + 2 * pad + 1, batch * groups, pad_w, total, **options)
        interior = (pad * batch * groups * pad_w + pad) * total  # the first element of pixel (pad, 0, 0, pad)
        for x, (start, end) in zip(xs, splits, strict=True):
            target = _layout_grid(base, grid, pad_w, total, (end - start, 1, 1, 0, 1, 0), interior + start)
            base = _write(base, target, _map_grid(x, groups, 1), interior + start)
        shifted = torch.zeros(_shifted_rows(base, k), k, k * scale * scale, **options)
        shifted = _write(shifted, _kernel_tap_view(shifted, grid, k, scale), _kernel_grid(kernels, groups, k, scale))
        ctx.save_for_backward(base, shifted)
        ctx.k, ctx.groups, ctx.scale, ctx.widths = k, groups, scale, widths
        out, block = _shifted_reassemble(base, shifted, k), scale * scale
        outputs = []
        for start, end in splits:
            result = torch.empty(batch, groups * (end - start), scale * height, scale * width, **options)
            inner = (end - start, block, scale, scale, scale, 1)
            source = _layout_grid(out, grid, pad_w, total * block, inner, start * block)
            result = _write(result, _map_grid(result, groups, scale), source)
            outputs.append(result)
        return tuple(outputs)

    @staticmethod
    @once_differentiable  # its backward reads the laid-out inputs, not the inputs: no second derivatives
    def backward(ctx, *grads: Tensor) -> tuple[Tensor | None, ...]:
        base, shifted = ctx.saved_tensors
        k, groups, scale, widths = ctx.k, ctx.groups, ctx.scale, ctx.widths
        pad, block, total = k // 2, scale * scale, base.shape[-1]
        batch, options = grads[0].shape[0], factory_kwargs(base.device, base.dtype)
        height, width, pad_w = grads[0].shape[2] // scale, grads[0].shape[3] // scale, base.shape[2]
        grid, splits, stride = (height, batch, groups, width), _channel_splits(widths), _row_stride(base)
        spread_grad = torch.zeros(shifted.shape[0], total, k * block, **options)
        per_pixel = total * k * block  # pixel p's gradient goes to row p + a * R, block a; the wrapped columns stay 0
        for grad, (start, end) in zip(grads, splits, strict=True):
            inner = (end - start, k * block, k, stride * per_pixel + block, scale, scale, scale, 1)
            target = _layout_grid(spread_grad, grid, pad_w, per_pixel, inner, start * k * block)
            spread_grad = _write(spread_grad, target, _map_grid(grad, groups, scale, repeat=k), start * k * block)
        need_taps, need_xs = ctx.needs_input_grad[0], any(ctx.needs_input_grad[4:6])
        grad_base, grad_shifted = _shifted_reassemble_backward(base, shifted, spread_grad, k, need_xs, need_taps)
        grad_kernels = None
        if grad_shifted is not None:
            grad_kernels = torch.empty(batch, groups * k * k, scale * height, scale * width, **options)
            source = _kernel_tap_view(grad_shifted, grid, k, scale)
            grad_kernels = _write(grad_kernels, _kernel_grid(grad_kernels, groups, k, scale), source)
        grad_xs: list[Tensor | None] = [None, None]
        if grad_base is not None:
            interior = (pad * batch * groups * pad_w + pad) * total
            for i, (start, end) in enumerate(splits):
                grad_x = torch.empty(batch, groups * (end - start), height, width, **options)
                pixel = (end - start, 1, 1, 0, 1, 0)
                source = _layout_grid(grad_base, grid, pad_w, total, pixel, interior + start)
                grad_x = _write(grad_x, _map_grid(grad_x, groups, 1), source)
                grad_xs[i] = grad_x
        return grad_kernels, None, None, None, *grad_xs


def _output_map(out: Tensor, batch: int, groups: int, scale: int, source: tuple[int, int]) -> Tensor:
    """:func:`_reassemble`'s output (h*B*G*(w + 2p), C/G, s*s) -> (B, C, s*h, s*w), the wrapped columns dropped."""
    height, width = source
    rows = out.view(height, batch, groups, -1, out.shape[1], scale, scale)[:, :, :, :width]
    return rows.permute(1, 2, 4, 0, 5, 3, 6).reshape(batch, groups * out.shape[1], scale * height, scale * width)


def _neighbourhood_base(x: Tensor, groups: int, pad: int, padding: str) -> Tensor:
    """x (B, C, h, w) -> (h + 2p + 1, B*G, w + 2p, C/G): padded by ``padding`` and one more zero row, the layout whose
    neighbourhood rows are strided views (:func:`_neighbour_rows`); :class:`_Carafe` writes it itself.
    """
    batch, channels = x.shape[:2]
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


def _record_flops(k: int, maps: int, outputs: int, matmul_outputs: int) -> None:
    """Report 2 k*k FLOPs per output element of ``maps`` (B * C) maps of ``outputs`` pixels each. FlopCounterMode
    also counts the reassembly's matmuls, which run over ``matmul_outputs`` pixels per map (the 2p wrapped columns of
    each row too, and in the one-matmul form k - 1 more rows): those are taken off.
    """
    record_flops(2 * k * k * maps * (outputs - matmul_outputs))


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
    custom = may_use_custom_kernels()
    if custom and padding == "zeros" and (out_h, out_w) == (scale * height, scale * width):
        return carafe_together((x,), kernels, k, groups, scale)[0]
    matmul_rows = src_h + k - 1 if custom else src_h if k > 1 and scale > 1 else 0
    _record_flops(k, batch * channels, out_h * out_w, scale * scale * matmul_rows * pad_w)
    base = _neighbourhood_base(x, groups, pad, padding)
    taps = _pixel_taps(kernels, groups, k, scale, (src_h, src_w), pad_w)
    out = _Reassemble.apply(base, taps, k) if custom else _reassemble(base, taps, k)
    return _output_map(out, batch, groups, scale, (src_h, src_w))[..., :out_h, :out_w]


def carafe_together(
    xs: tuple[Tensor, ...], kernels: Tensor, kernel_size: int, groups: int = 1, scale: int = 1, padding: str = "zeros"
) -> tuple[Tensor, ...]:
    """:func:`carafe` of one or two maps xs[i] (B, C_i, h, w) with the same kernels -> (B, C_i, Ho, Wo) each.

    With zero borders and an exact ``scale``, outside export and ``torch.func``, one pass reassembles both (one
    layout, one matmul); otherwise each runs :func:`carafe`.
    """
    if not 1 <= len(xs) <= 2:
        raise ValueError(f"carafe_together takes one or two maps, got {len(xs)}")
    for x in xs:
        check_kernels(x, kernels, kernel_size, groups, padding)
    height, width = xs[0].shape[-2:]
    exact = all(x.shape[-2:] == xs[0].shape[-2:] for x in xs) and kernels.shape[-2:] == (scale * height, scale * width)
    if not (exact and padding == "zeros" and xs[0].shape[0] and may_use_custom_kernels()):
        return tuple(carafe(x, kernels, kernel_size, groups, scale, padding) for x in xs)
    k, pad_w, channels = kernel_size, width + 2 * (kernel_size // 2), sum(x.shape[1] for x in xs)
    _record_flops(
        k, xs[0].shape[0] * channels, scale * scale * height * width, scale * scale * (height + k - 1) * pad_w
    )
    return cast(tuple[Tensor, ...], _Carafe.apply(kernels, k, groups, scale, xs[0], xs[1] if len(xs) > 1 else None))
