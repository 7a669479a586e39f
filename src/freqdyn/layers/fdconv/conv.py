"""FDConv: Frequency Dynamic Convolution (Chen et al., CVPR 2025, arXiv:2503.18783)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from .._common.attention_heads import Attentions
from .._common.batched_conv import batched_conv2d
from .._common.checks import check_feature_map, check_int, check_ints
from .._common.conv_args import IntPair, Padding
from .._common.conv_contract import ConvContract
from .._common.device_dtype import as_dtype, factory_kwargs
from .._common.pooling import mean_pool
from .._common.program_mode import compiling, compute_dtype, has_hooks, may_checkpoint
from .._common.trace_only import TraceOnly
from .._compat import become_plain_conv
from .fourier_dynamic import DEFAULTS, FourierDynamicBase, FourierOptions
from .frequency_band_modulation import FrequencyBandModulation
from .kernel_conv import keeps_kernels
from .kernel_spatial_modulation import KernelSpatialModulationGlobal

AGGREGATIONS = ("auto", "weight", "feature")
_KEPT_TENSORS = 4  # kernel-sized tensors autograd keeps per sample without the recompute


class _Recompute(contextlib.AbstractContextManager):
    """The context of a kernel recompute in backward (entered again when a retained graph recomputes again).

    It raises autograd's own error if a parameter the recompute reads was changed in place after the forward
    (which saved no copy of it), as ``nn.Conv2d`` does for its weight, and sets ``layer.bypass_hooks`` so that
    submodule hooks fire once per forward, not again in backward.
    """

    def __init__(self, layer: FourierDynamicBase, params: list[Tensor]) -> None:
        self.layer, self.versions = layer, [(p, p._version) for p in params]

    def __enter__(self) -> None:
        for p, version in self.versions:
            if p._version != version:
                raise RuntimeError(
                    f"one of the variables needed for gradient computation has been modified by an inplace "
                    f"operation: [{type(p).__name__} of shape {list(p.shape)}] of {type(self.layer).__name__} is at "
                    f"version {p._version}; expected version {version} instead (recompute_kernels=True rebuilds the "
                    "kernels from the parameters in backward)"
                )
        self.layer.bypass_hooks = True

    def __exit__(self, *exc: object) -> None:
        self.layer.bypass_hooks = False


class FDConv(TraceOnly, ConvContract, FourierDynamicBase):
    """Drop-in ``nn.Conv2d`` replacement with Fourier Disjoint Weights, KSM (global + local) and FBM.

    Always dynamic: the official gating (plain convolutions for <= 16 channels or a kernel side other than 1 and 3)
    is :func:`~freqdyn.layers.fdconv.gating.gated_fdconv`'s, which :func:`freqdyn.convert`, checkpoint conversion and
    mmengine's ``type="FDConv"`` apply. FBM is built when the larger kernel side is in ``use_fbm_if_k_in`` (or for
    strided layers with ``use_fbm_for_stride``). A plain ``nn.Conv2d`` state_dict (``weight``, ``bias``) loads by
    conversion (:class:`FourierDynamicBase`). Memory, numeric range and high learning rates (build with ``temp=16,
    kernel_temp=16, fbm_temp=16`` there): docs/fdconv.md, "Drop-in details".

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode:
            as ``nn.Conv2d``; input (B, in_channels, H, W) -> output (B, out_channels, H', W').
        kernel_num: K, the frequency groups of the Fourier weight mixed per sample (``None``: out_channels // 2,
            with ``kernel_temp = sqrt(K * P)``, the official default).
        param_ratio: P, the copies of the Fourier weight (P x the conv's parameters).
        reduction: hidden width of the KSM-Global trunk as a fraction of ``in_channels`` (at least 16).
        kernel_temp: temperature of the kernel attention; ``temp``: of the other KSM heads (default
            ``kernel_temp``).
        att_multi: multiplier of the sigmoid attentions (2 makes zero logits neutral), at most 16.
        ksm_act: ``'sigmoid'`` or ``'tanh'`` (1 + tanh) for the KSM attentions.
        use_ksm_local: build KSM-Local (the per-kernel-element attention).
        use_fbm_if_k_in, use_fbm_for_stride: which layers get FBM; ``fbm_k_list``, ``fbm_act``,
            ``fbm_spatial_group``, ``fbm_masks``, ``fbm_temp``: its cut-offs, activation, attention groups, mask
            rule and temperature (:class:`FrequencyBandModulation`).
        freq_grouping: ``'official'`` (float32 radius, torch's unstable sort: the authors' order) or ``'stable'``
        (exact integer radius, stable sort); the order is stored in the ``freq_group`` buffer.
        aggregation: where the channel and filter attentions go: ``'weight'`` multiplies them into the
            per-sample kernels (B x O x I/g x kh x kw values), ``'feature'`` scales the input and output maps
            instead (B x (I + O) x H x W values); ``'auto'`` takes the smaller (``'weight'`` under
            ``torch.compile``, so that one graph serves every size). Same function.
        synthesis: how the per-sample kernels are built from the Fourier weight: ``'fft'`` gathers each
            sample's group attentions onto the spectrum and runs one inverse FFT per sample, ``'basis'``
            multiplies the attentions with the K spatial group kernels (one matmul); ``'auto'`` picks the
            cheaper by shape and batch (under ``torch.compile``, by shape alone). Same function.
        attention_norm: ``'batch'`` (the official BatchNorm), ``'frozen'`` or ``'layer'``
            (:mod:`freqdyn.layers._common.attention_norm`).
        recompute_kernels: rebuild large per-sample kernels in backward instead of keeping them (docs/fdconv.md,
        "Memory"; small ones are kept either way).
        ratio_scaling: ``'mean'`` (default: the P copies average, so a neutral layer equals its source) or
            ``'official'`` (the authors' alpha times P, for their P > 1 checkpoints; :class:`FourierDynamicBase`).

    Shape:
        - Input: (B, in_channels, H, W), floating, contiguous or channels-last.
        - Output: (B, out_channels, H', W') with ``nn.Conv2d``'s H' and W', in the input's dtype and layout.

    Differs from the authors' (docs/fdconv.md, "Differences from the official code"), whose checkpoints still load
    with ``strict=True`` and compute their function:
        - neutral start: every attention head, KSM-Local and the FBM convs at zero, so :meth:`from_conv` is exact;
        - groups, non-square kernels, odd sizes, any ``kernel_num``, batch size 1, fp16 / bf16, padding modes work;
        - ``param_ratio > 1`` averages the P copies unless ``ratio_scaling='official'``.

    Examples:
        >>> conv = torch.nn.Conv2d(32, 64, 3, padding=1)
        >>> layer = FDConv.from_conv(conv, kernel_num=8)  # neutral attention: computes conv
        >>> x = torch.randn(2, 32, 16, 16)
        >>> torch.allclose(layer(x), conv(x), atol=1e-5)
        True
        >>> FDConv(16, 16, 3).dft_weight.shape  # always dynamic: the official gating is gated_fdconv's
        torch.Size([1, 48, 25, 2])
    """

    KSM_Global: KernelSpatialModulationGlobal

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: Padding = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        kernel_num: int | None = DEFAULTS.kernel_num,
        param_ratio: int = DEFAULTS.param_ratio,
        reduction: float = DEFAULTS.reduction,
        kernel_temp: float = DEFAULTS.kernel_temp,
        temp: float | None = DEFAULTS.temp,
        att_multi: float = DEFAULTS.att_multi,
        ksm_act: str = DEFAULTS.ksm_act,
        use_ksm_local: bool = DEFAULTS.use_ksm_local,
        use_fbm_if_k_in: Sequence[int] = (3,),
        use_fbm_for_stride: bool = False,
        fbm_k_list: Sequence[int] = (2, 4, 8),
        fbm_act: str = "sigmoid",
        fbm_spatial_group: int = 1,
        fbm_masks: str = "official",
        fbm_temp: float = 1.0,
        freq_grouping: str = DEFAULTS.freq_grouping,
        aggregation: str = "auto",
        synthesis: str = DEFAULTS.synthesis,
        attention_norm: str = DEFAULTS.attention_norm,
        ratio_scaling: str = DEFAULTS.ratio_scaling,
        recompute_kernels: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self._set_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, padding_mode)
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.aggregation, self.recompute_kernels = aggregation, recompute_kernels
        use_fbm_if_k_in = check_ints(use_fbm_if_k_in, "use_fbm_if_k_in")
        fbm_k_list = check_ints(fbm_k_list, "fbm_k_list")
        fbm_spatial_group = check_int(fbm_spatial_group, "fbm_spatial_group")
        in_channels, out_channels, groups = self.in_channels, self.out_channels, self.groups
        kernel_size = self.kernel_size
        kw = factory_kwargs(device, dtype)
        options = FourierOptions(
            kernel_num=kernel_num,
            param_ratio=param_ratio,
            reduction=reduction,
            kernel_temp=kernel_temp,
            temp=temp,
            att_multi=att_multi,
            ksm_act=ksm_act,
            use_ksm_local=use_ksm_local,
            synthesis=synthesis,
            freq_grouping=freq_grouping,
            attention_norm=attention_norm,
            ratio_scaling=ratio_scaling,
        )
        self._build_fourier(in_channels, out_channels, kernel_size, groups, options, device, dtype)
        use_fbm = max(kernel_size) in use_fbm_if_k_in or (use_fbm_for_stride and max(self.stride) > 1)
        self.FBM = (
            FrequencyBandModulation(
                in_channels, tuple(fbm_k_list), fbm_act, fbm_spatial_group, masks=fbm_masks, temp=fbm_temp, **kw
            )
            if use_fbm
            else None
        )
        self.bias = nn.Parameter(torch.empty(out_channels, **kw)) if bias else None
        self.reset_parameters()

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, **kwargs) -> FDConv:
        """Convert an ``nn.Conv2d`` (pretrained or not); the result at neutral attention equals ``conv``."""
        layer = cls._like(conv, **kwargs)
        with torch.no_grad():
            layer.set_spatial_weight(conv.weight)
            if conv.bias is not None and layer.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer.train(conv.training)

    def __setstate__(self, state: dict) -> None:
        if state.get("is_dynamic") is False:  # pickled by freqdyn <= 7a37871, where a gated FDConv was a plain conv
            become_plain_conv(self, state)
            return
        super().__setstate__(state)

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation for the kernel and bias; attention heads to their neutral zeros."""
        self._reset_fourier(self.bias)
        if self.FBM is not None:
            self.FBM.reset_parameters()

    @torch.no_grad()
    def neutralise_(self) -> None:
        """Zero every attention head, the KSM-Local conv and the FBM convs: the layer becomes a static conv."""
        super().neutralise_()
        if self.FBM is not None:
            self.FBM.reset_parameters()

    def _use_weight_branch(self, height: int, width: int) -> bool:
        if self.aggregation != "auto":
            return self.aggregation == "weight"
        if compiling():  # a size-independent choice, so that one compiled graph serves every spatial size
            return True
        size = self.out_channels * self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        return size < (self.in_channels + self.out_channels) * height * width

    def forward(self, x: Tensor) -> Tensor:
        check_feature_map(x, self.in_channels, type(self).__name__)
        if not x.shape[0]:
            return self._empty_batch(x)
        return self._layout_output(self._dynamic_forward(self._layout_input(x)))

    def _dynamic_forward(self, x: Tensor) -> Tensor:
        pooled = mean_pool(x, (2, 3), compute_dtype(x.dtype))  # the attentions run in float32 for half
        att = self.KSM_Global(pooled)
        if self.FBM is not None:
            x = self.FBM(x)
        if self.groups == 1 and self._takes_kernel_function(x.shape[0], att):
            return self._kernel_conv(x, pooled, att)
        # hooks on KSM-Local (which runs inside the recompute) would fire again in backward, and any autograd work
        # they do would upset the checkpoint: with hooks there, the kernels are kept instead
        hooked = self.KSM_Local is not None and any(has_hooks(m) for m in self.KSM_Local.modules())
        if (
            hooked
            or not (self.recompute_kernels and may_checkpoint())
            or (not compiling() and self._kernels_are_small(x))
        ):
            return self._per_sample_conv(x, pooled, att)  # torch.func transforms do not take checkpoints' hooks
        # the per-sample kernels (B*O*I*kh*kw values) are not saved for backward but rebuilt there, for the whole
        # batch in one call: the op count stays independent of the batch (a loop over chunks of samples grew with it)
        if compiling():
            return checkpoint(self._per_sample_conv, x, pooled, att, use_reentrant=False)
        return checkpoint(
            self._per_sample_conv, x, pooled, att, use_reentrant=False, context_fn=self._recompute_contexts
        )

    def _kernel_conv(self, x: Tensor, pooled: Tensor, att: Attentions) -> Tensor:
        """:meth:`_per_sample_conv` as one autograd Function whose backward rebuilds the kernels (or keeps them
        where they are small) without replaying the conv.
        """
        kernel_values, input_values = math.prod(self.kernel_shape), self.in_channels * x.shape[2] * x.shape[3]
        # (compiled, the operator keeps nothing: no guard on the batch)
        keep = not compiling() and (
            not self.recompute_kernels or keeps_kernels(x.shape[0], kernel_values, input_values)
        )
        on_features = not self._use_weight_branch(x.shape[2], x.shape[3])
        x, padding = self._pad(x)
        y = self._kernel_function(
            x,
            pooled,
            att,
            stride=self.stride,
            padding=padding,
            dilation=self.dilation,
            keep=keep,
            on_features=on_features,
        )
        return y if self.bias is None else y + as_dtype(self.bias, y.dtype).view(1, -1, 1, 1)

    def _kernels_are_small(self, x: Tensor) -> bool:
        """Whether the tensors autograd keeps for backward without the recompute (the kernel and its ~3 factors,
        B * O * I/g * kh * kw values each) are smaller than the input map (B * I * H * W) that the conv saves anyway:
        then recomputing them in backward would cost a second synthesis and conv forward to save little memory.
        """
        kernel = math.prod(self.kernel_shape)
        return _KEPT_TENSORS * kernel <= self.in_channels * x.shape[2] * x.shape[3]

    def _recompute_contexts(self) -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        """``checkpoint``'s contexts: the forward as is; the recompute in backward checks that the parameters it
        reads are unchanged and runs without module hooks (any registered after the forward).
        """
        read = [self.dft_weight, *([] if self.KSM_Local is None else self.KSM_Local.parameters())]
        return contextlib.nullcontext(), _Recompute(self, read)

    def _per_sample_conv(self, x: Tensor, pooled: Tensor, att: Attentions) -> Tensor:
        """The modulated per-sample kernels applied to x (B, I, H, W), the FBM output: (B, O, H', W')."""
        on_kernel = self._use_weight_branch(x.shape[2], x.shape[3])
        weight, features, out_scale = self.modulated(pooled, att, self.groups, None if on_kernel else x)
        x, padding = self._pad(x if features is None else features)
        bias = as_dtype(self.bias, x.dtype) if self.bias is not None else None
        return batched_conv2d(
            x, as_dtype(weight, x.dtype), bias, self.stride, padding, self.dilation, self.groups, out_scale=out_scale
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._fourier_repr()}, fbm={self.FBM is not None}"
