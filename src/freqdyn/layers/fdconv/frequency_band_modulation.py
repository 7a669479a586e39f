"""Frequency Band Modulation (FBM, FDConv §3.3): split a feature map into frequency bands and re-weight each
band with a spatially varying attention map.

Band j lies between two box low-passes L_{j-1} and L_j of the input (L_0 = x; masks, operators and the
``'official'`` / ``'exact'`` rules in :mod:`freqdyn.layers.fdconv.low_pass`); the output is
sum_j a_j * (L_{j-1} - L_j) + L_last, which telescopes to x when every a_j = 1 (the zero-initialised state).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn as nn
from torch import Tensor

from .._common.attention_conv import AttentionConv
from .._common.attention_heads import check_activation, modulation
from .._common.batched_conv import batched_conv2d
from .._common.checks import check_feature_map, check_int, check_ints, check_positive
from .._common.conv_args import conv2d
from .._common.device_dtype import as_dtype, reshaped
from .._common.joined import joined
from .._common.program_mode import (
    compiling,
    compute_dtype,
    exporting,
    has_hooks,
    may_accumulate_in_place,
    memory_format_of,
)
from .._common.trace_only import TraceOnly
from .low_pass import (
    MASK_RULES,
    band_coefficients,
    band_plan,
    fft_band_modulation,
    filter_rows,
    graph_low_passes,
    low_passes,
    stacked_low_passes,
)

TRANSFORMS = ("fft", "separable", "auto")


class FrequencyBandModulation(TraceOnly, nn.Module):
    """(B, C, H, W) -> (B, C, H, W): spatially adaptive re-weighting of ``len(k_list) + 1`` frequency bands.

    Args:
        in_channels: C.
        k_list: band cut-offs 0.5 / k cycles per pixel, from the widest low-pass to the narrowest.
        act: ``'sigmoid'`` (2 * sigmoid) or ``'tanh'`` (1 + tanh) for the attention maps.
        spatial_group: G attention maps per band, each shared by C / G channels (> 64 means G = C, as
            in the official code).
        spatial_kernel: odd kernel size of the grouped convs that predict the attention maps.
        masks: ``'official'`` (default) or ``'exact'`` band masks (see the module docstring).
        temp: temperature of the attention maps (logits / temp); 1 is the official layer. A higher value slows
            the maps' learning: at high learning rates they otherwise saturate (see :class:`FDConv`).
        transform: how the low-passes are computed in eager mode: ``'fft'`` (default; ``'auto'``, its former name,
            is the same) all bands at once by FFTs pruned to the kept frequencies
            (:func:`~freqdyn.layers.fdconv.low_pass.fft_band_modulation`: a short fixed sequence of ops, O(log HW) per
            value), ``'separable'`` matmuls with the size's Fourier operators (O(H + W) per value, about three times
            the ops: a CPU option, which trains 1.3-2x faster on a 2-core CPU, BENCHMARKS.md). Same function.
            A trace or export always builds the operators in its graph from the input's shape (no FFT operators in
            ONNX; any H, W).

    Shape:
        - Input: (B, C, H, W).
        - Output: (B, C, H, W), in the input's memory format.

    Differs from the authors' FBM (docs/fdconv.md):
        - its attention convs start at zero, so a fresh FBM is the identity (the bands add up to x);
        - ``masks='exact'`` builds the band masks at the input size (the default ``'official'`` is theirs);
        - FFTs run in float32 for half inputs; a temperature ``temp`` slows the maps at high learning rates.

    Examples:
        >>> fbm = FrequencyBandModulation(16)
        >>> x = torch.randn(1, 16, 24, 24)
        >>> torch.allclose(fbm(x), x, atol=1e-5)  # at its zero-initialised attention, the bands add up to x
        True
    """

    def __init__(
        self,
        in_channels: int,
        k_list: tuple[int, ...] = (2, 4, 8),
        act: str = "sigmoid",
        spatial_group: int = 1,
        spatial_kernel: int = 3,
        masks: str = "official",
        temp: float = 1.0,
        transform: str = "fft",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_activation(act, "fbm_act")
        in_channels, spatial_group = check_int(in_channels, "in_channels"), check_int(spatial_group, "spatial_group")
        k_list = check_ints(k_list, "k_list (FDConv's fbm_k_list)")
        if not k_list or list(k_list) != sorted(k_list):
            raise ValueError(
                f"k_list (FDConv's fbm_k_list) must be a non-empty increasing list of ints >= 1, got {k_list!r}"
            )
        if check_int(spatial_kernel, "spatial_kernel") % 2 == 0:
            raise ValueError(f"spatial_kernel must be a positive odd int, got {spatial_kernel}")
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        if masks not in MASK_RULES:
            raise ValueError(f"fbm_masks must be one of {MASK_RULES}, got {masks!r}")
        groups = in_channels if spatial_group > 64 else spatial_group
        if groups < 1 or in_channels % groups:
            raise ValueError(
                f"spatial_group (FDConv's fbm_spatial_group) = {spatial_group} must divide in_channels={in_channels}"
            )
        self.in_channels, self.k_list, self.act, self.spatial_group = in_channels, tuple(k_list), act, groups
        self.masks, self.temp = masks, check_positive(temp, "temp (FDConv's fbm_temp)")
        self.transform = transform
        self.freq_weight_conv_list = nn.ModuleList(
            AttentionConv(
                in_channels,
                groups,
                spatial_kernel,
                padding=spatial_kernel // 2,
                groups=groups,
                device=device,
                dtype=dtype,
            )
            for _ in k_list
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in cast(list[AttentionConv], list(self.freq_weight_conv_list)):
            nn.init.zeros_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def low_passes(self, x: Tensor) -> list[Tensor]:
        """Low-passed copies of x (B, C, H, W), one per cut-off, widest first, in x's dtype."""
        return low_passes(x, self.k_list, self.masks)

    def attention(self, x: Tensor) -> Tensor:
        """Band attention maps (B, G, n_bands, H, W) from x (B, C, H, W), in x's dtype."""
        convs = cast(list[AttentionConv], list(self.freq_weight_conv_list))
        g = self.spatial_group
        if any(has_hooks(c) for c in convs):  # each band's conv called as its module, so that its hooks fire
            logits = torch.stack([c(x) for c in convs], dim=2)  # (B, G, n, H, W)
            return self._maps(logits)
        # (G * n, C / G, k, k) and (G * n,), group-major; with one group a plain concatenation (fewer ops)
        weights: list[Tensor] = [c.weight for c in convs]
        biases: list[Tensor] = [c.bias for c in convs if c.bias is not None]
        if g == 1:
            weight, bias = joined(weights), joined(biases)
        else:
            weight, bias = torch.stack(weights, dim=1).flatten(0, 1), torch.stack(biases, dim=1).flatten()
        weight, bias, pad = as_dtype(weight, x.dtype), as_dtype(bias, x.dtype), convs[0].padding[0]
        if compiling():  # inductor's conv-backward lowering fixes H and W (a recompile per size in training)
            logits = batched_conv2d(x, weight[None], bias, (1, 1), (pad, pad), (1, 1), g)  # an operator: any size
        else:
            logits = conv2d(x, weight, bias, (1, 1), (pad, pad), (1, 1), g)
        logits = reshaped(logits, x.shape[0], g, len(convs), *x.shape[2:])
        return self._maps(logits)

    def _maps(self, logits: Tensor) -> Tensor:
        """Band logits (B, G, n, H, W) -> attention maps, same shape."""
        return modulation(logits, self.act, 2.0, temp=self.temp)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W) in x's memory format.

        The separable route runs channels-last, where both of its transforms are plain matmuls over pixel rows.
        """
        check_feature_map(x, self.in_channels, type(self).__name__)
        # sum_j a_j (L_{j-1} - L_j) + L_n  ==  a_1 x + sum_{j<n} (a_{j+1} - a_j) L_j + (1 - a_n) L_n
        if exporting():  # the operators are built in the graph from x's shape: it runs at any H, W
            return self._stacked_forward(x, lambda xw: graph_low_passes(xw, self.k_list, self.masks))
        if self.transform != "separable" and x.numel():  # (MKL refuses an empty FFT)
            return self._fft_forward(x)  # compiled: one opaque operator
        if compiling():
            return self._stacked_forward(x, lambda xw: stacked_low_passes(xw, list(self.k_list), self.masks))
        batch, channels, height, width = x.shape
        g = self.spatial_group
        per_group = channels // g
        work = compute_dtype(x.dtype)
        in_place = may_accumulate_in_place()
        with torch.autocast(x.device.type, enabled=False):
            plan = band_plan(height, width, self.k_list, self.masks, work, x.device)
            xl = as_dtype(x, work).permute(0, 2, 3, 1).contiguous()  # (B, H, W, C); no copy for channels_last x
            att = self.attention(xl.permute(0, 3, 1, 2)).permute(0, 3, 4, 1, 2)  # (B, H, W, G, n)
            coef = band_coefficients(att, -1)
            pixel_rows = xl.reshape(batch * height, width, channels)
            rows = torch.bmm(plan.basis_w.t().expand(batch * height, -1, -1), pixel_rows)
            rows = rows.reshape(batch, height, rows.shape[-2], channels)  # x V along W: (B, H, Rw, C)
            proj = filter_rows(plan, rows)  # T_j: (B, H, w_j, C)
            if g == 1:
                # pixel (h, w) of sum_j c_j L_j = sum_j c_j[h, w] V_j[w] . (P_j x V_j)[h]: a matmul per row h
                def term(j: int) -> tuple[Tensor, Tensor]:
                    w = plan.widths[j]
                    synth = (coef[..., 0, j, None] * plan.basis_w[:, :w]).reshape(batch * height, width, w)
                    return synth, proj[j].reshape(batch * height, w, channels)

                bands = torch.bmm(*term(0))
                for j in range(1, len(proj)):
                    synth, part = term(j)
                    bands = bands.baddbmm_(synth, part) if in_place else torch.baddbmm(bands, synth, part)
                bands = bands.reshape(batch, height, width, 1, channels)
            else:
                bands = torch.stack(
                    [
                        (plan.basis_w[:, :w] @ part).reshape(batch, height, width, g, per_group) * coef[..., j, None]
                        for j, (part, w) in enumerate(zip(proj, plan.widths, strict=True))
                    ]
                ).sum(0)
            xg = xl.reshape(batch, height, width, g, per_group)
            gate = att[..., :1]
            out = bands.addcmul_(xg, gate) if in_place else torch.addcmul(bands, xg, gate)
            out = out.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
        return as_dtype(out, x.dtype).contiguous(memory_format=memory_format_of(x))

    def _fft_forward(self, x: Tensor) -> Tensor:
        """:meth:`forward` by :func:`~freqdyn.layers.fdconv.low_pass.fft_band_modulation`, channels-first.

        In training, backward rebuilds the low-passes (FFTs) rather than keep n maps of x's size per layer.
        """
        batch, channels, height, width = x.shape
        g = self.spatial_group
        with torch.autocast(x.device.type, enabled=False):
            xw = as_dtype(x, compute_dtype(x.dtype))
            att = self.attention(xw)  # (B, G, n, H, W)
            xg = reshaped(xw, batch, g, channels // g, height, width)
            # keeps only xg and att for backward
            out = reshaped(fft_band_modulation(xg, att, self.k_list, self.masks), batch, channels, height, width)
        return as_dtype(out, x.dtype).contiguous(memory_format=memory_format_of(x))

    def _stacked_forward(self, x: Tensor, low_passes: Callable[[Tensor], Tensor]) -> Tensor:
        """:meth:`forward` from the stacked low-passes (n, B, C, H, W) that ``low_passes`` computes from x in its
        work dtype: those a trace or export builds in its graph
        (:func:`~freqdyn.layers.fdconv.low_pass.graph_low_passes`), or, for ``torch.compile``, one opaque operator
        (:func:`~freqdyn.layers.fdconv.low_pass.stacked_low_passes`); either way batch and spatial sizes stay
        dynamic.
        """
        per_group = self.in_channels // self.spatial_group
        with torch.autocast(x.device.type, enabled=False):
            xw = as_dtype(x, compute_dtype(x.dtype))
            att = self.attention(xw).permute(2, 0, 1, 3, 4)  # (n, B, G, H, W)
            coef = band_coefficients(att, 0)
            if self.spatial_group > 1 and per_group > 1:  # a map per channel, so the result needs no reshape
                att, coef = att.repeat_interleave(per_group, dim=2), coef.repeat_interleave(per_group, dim=2)
            out = (low_passes(xw) * coef).sum(0) + xw * att[0]
        return as_dtype(out, x.dtype).contiguous(memory_format=memory_format_of(x))
