"""CARAFE-style reassembly (Wang et al., ICCV 2019) in pure PyTorch, without the k*k-times unfold tensor.

Every output pixel (i, j) is a weighted sum of the k x k neighbourhood of its source pixel
(i // scale, j // scale) in x, with per-pixel, per-group weights. The reference formulation unfolds x into
(B, C * k * k, H, W) and upsamples that; here the sum runs over the k*k offsets and the scale**2 sub-pixel
phases on shifted *views* of the padded input, so neither the forward pass nor autograd keeps anything
larger than the input and the output.

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
from .._common.program_mode import exporting, functorch_active

PADDINGS = ("zeros", "reflect")


def _pad_mode(size: int, pad: int) -> str:
    return "reflect" if pad < size else "replicate"  # reflection needs pad < size


def pad_neighbourhood(x: Tensor, pad: int, padding: str = "zeros") -> Tensor:
    """Pad the last two dims by ``pad``: zeros, or reflection (replicate along a dim too small to reflect)."""
    if pad == 0:
        return x
    if padding == "zeros":
        return F.pad(x, [pad] * 4)
    mode_h, mode_w = _pad_mode(x.shape[-2], pad), _pad_mode(x.shape[-1], pad)
    if mode_h == mode_w:
        return F.pad(x, [pad] * 4, mode=mode_h)
    return F.pad(F.pad(x, [0, 0, pad, pad], mode=mode_h), [pad, pad, 0, 0], mode=mode_w)


def source_size(out_size: tuple[int, int], size: tuple[int, int], scale: int) -> tuple[int, int]:
    """Size of the (edge-extended) source map that an ``out_size`` output at ``scale`` reads: ceil(out / scale).

    An exact multiple gives the input size itself, in integer arithmetic: under ``torch.compile`` the sizes then
    stay plain symbols, whose strides inductor can order (it cannot for a ceiling of a symbolic ratio).
    """
    need = cast(tuple[int, int], tuple(s if o == scale * s else -(-o // scale)
                                       for o, s in zip(out_size, size, strict=True)))
    for o, s in zip(out_size, size, strict=True):
        if not scale * s - (scale - 1) <= o <= scale * s + (scale - 1):
            raise ValueError(f"output size {out_size} is not {scale}x the input size {size} (up to rounding)")
    return need


def check_kernels(x: Tensor, kernels: Tensor, kernel_size: int, groups: int, padding: str = "zeros") -> None:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if x.shape[1] % groups:
        raise ValueError(f"{x.shape[1]} channels cannot be split into {groups} groups")
    if kernels.dim() != 4 or kernels.shape[0] != x.shape[0] or kernels.shape[1] != groups * kernel_size**2:
        raise ValueError(f"kernels must be (B={x.shape[0]}, groups*k*k={groups * kernel_size**2}, H, W), "
                         f"got {tuple(kernels.shape)}")


class _Reassemble(torch.autograd.Function):
    """padded (B, G, C/G, h + 2p, w + 2p), kernels (B, G, k*k, h, s, w, s) -> (B, G, C/G, h, s, w, s).

    Forward and backward both loop over the k*k offsets on views; autograd keeps only the two inputs.
    """

    @staticmethod
    def forward(ctx, padded: Tensor, kernels: Tensor, k: int) -> Tensor:
        batch, groups, per_group = padded.shape[:3]
        _, _, _, height, scale, width, _ = kernels.shape
        phases = []
        for p in range(scale):
            for q in range(scale):
                acc = padded[..., :height, :width] * kernels[:, :, None, 0, :, p, :, q]
                for offset in range(1, k * k):
                    a, b = divmod(offset, k)
                    acc.addcmul_(padded[..., a : a + height, b : b + width], kernels[:, :, None, offset, :, p, :, q])
                phases.append(acc)
        out = torch.stack(phases, dim=-1).reshape(batch, groups, per_group, height, width, scale, scale)
        out = out.permute(0, 1, 2, 3, 5, 4, 6).contiguous()
        ctx.save_for_backward(padded, kernels)
        ctx.k = k
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        padded, kernels = ctx.saved_tensors
        k = ctx.k
        _, _, _, height, scale, width, _ = kernels.shape
        grad_padded = torch.zeros_like(padded) if ctx.needs_input_grad[0] else None
        grad_kernels = torch.empty_like(kernels) if ctx.needs_input_grad[1] else None
        for p in range(scale):
            for q in range(scale):
                go = grad_out[:, :, :, :, p, :, q].contiguous()
                for offset in range(k * k):
                    a, b = divmod(offset, k)
                    window = (..., slice(a, a + height), slice(b, b + width))
                    if grad_kernels is not None:
                        grad_kernels[:, :, offset, :, p, :, q] = (go * padded[window]).sum(dim=2)
                    if grad_padded is not None:
                        grad_padded[window].addcmul_(go, kernels[:, :, None, offset, :, p, :, q])
        return grad_padded, grad_kernels, None


def _reassemble_stacked(padded: Tensor, kernels: Tensor, k: int) -> Tensor:
    """:class:`_Reassemble` in plain differentiable ops: the k*k shifted views stacked, every phase weighed.

    Materialises (B, C * k * k, h, w), but traces to about k*k + 3 nodes, for export; ``torch.func`` transforms
    need plain differentiable ops. (Under ``torch.compile`` it compiles 2.5x faster than the loop but runs about
    30x slower on CPU: inductor's code for the broadcast product and sum is poor, so the loop is kept there.)
    """
    _, _, _, height, _, width, _ = kernels.shape
    shifted = torch.stack([padded[..., a : a + height, b : b + width] for a in range(k) for b in range(k)], dim=3)
    return (shifted[:, :, :, :, :, None, :, None] * kernels[:, :, None]).sum(dim=3)


def carafe(x: Tensor, kernels: Tensor, kernel_size: int, groups: int = 1, scale: int = 1,
           padding: str = "zeros") -> Tensor:
    """Content-aware reassembly of x (B, C, h, w) with kernels (B, groups * k * k, Ho, Wo) -> (B, C, Ho, Wo).

    ``Ho, Wo`` is ``scale * (h, w)`` up to rounding (one pixel less or more per dim); output pixel (i, j)
    reads source pixel (i // scale, j // scale) of x edge-extended to ``ceil(Ho / scale)`` rows (columns).
    Channel c uses kernel group ``c // (C // groups)``; within a group, kernel channel a * k + b weighs the
    neighbour at offset (a - k // 2, b - k // 2). Borders: ``padding`` (module docstring). Under ``torch.export`` /
    ONNX export, tracing and ``torch.func`` transforms the sum runs on the stacked neighbourhoods (a much smaller
    graph) instead of the view loop.
    """
    check_kernels(x, kernels, kernel_size, groups, padding)
    batch, channels, height, width = x.shape
    out_h, out_w = kernels.shape[-2:]
    src_h, src_w = source_size((out_h, out_w), (height, width), scale)
    if (src_h, src_w) != (height, width):
        x = F.pad(x, [0, src_w - width, 0, src_h - height], mode="replicate")
    k, pad = kernel_size, kernel_size // 2
    padded = pad_neighbourhood(x, pad, padding).reshape(
        batch, groups, channels // groups, src_h + 2 * pad, src_w + 2 * pad
    )
    full_h, full_w = scale * src_h, scale * src_w
    if (full_h, full_w) != (out_h, out_w):
        kernels = F.pad(kernels, [0, full_w - out_w, 0, full_h - out_h])
    kernels = kernels.reshape(batch, groups, k * k, src_h, scale, src_w, scale)
    if exporting() or functorch_active():
        out = _reassemble_stacked(padded, kernels, k)
    else:
        out = _Reassemble.apply(padded, kernels, k)
    record_flops(2 * k * k * batch * channels * out_h * out_w)
    return out.reshape(batch, channels, full_h, full_w)[..., :out_h, :out_w]
