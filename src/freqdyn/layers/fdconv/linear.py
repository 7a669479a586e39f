"""FDLinear: the linear mode of FDConv, for ``nn.Linear`` and the 1x1 convolutions of transformer MLPs."""

from __future__ import annotations

import math
from typing import Any, Self

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._common.checks import ArgumentTypeError, check_features_last, check_int
from .._common.device_dtype import as_dtype, reshaped
from .._common.empty_batch import tie_to_parameters
from .._common.pooling import mean_pool
from .._common.program_mode import compiling, compute_dtype
from .._common.trace_only import TraceOnly
from .fourier_dynamic import DEFAULTS, FourierDynamicBase, FourierOptions
from .kernel_conv import keeps_kernels
from .kernel_spatial_modulation import KernelSpatialModulationGlobal


class LinearFourierBase(FourierDynamicBase):
    """What the Fourier linear layers (:class:`FDLinear`, ``FDLinearQwen``) share: an (out_features, in_features)
    kernel seen as a 1x1 one, and conversion from an ``nn.Linear``.
    """

    in_features: int
    out_features: int
    bias: Tensor | None

    def _set_features(self, in_features: int, out_features: int) -> tuple[int, int]:
        """Check the ``nn.Linear`` sizes (an error naming the bad one) and set them; subclasses call it first."""
        self.in_features = check_int(in_features, "in_features")
        self.out_features = check_int(out_features, "out_features")
        return self.in_features, self.out_features

    @classmethod
    def from_linear(cls, linear: nn.Linear, **kwargs: Any) -> Self:
        """Convert an ``nn.Linear``; the result at neutral attention equals ``linear``."""
        if not isinstance(linear, nn.Linear):
            raise ArgumentTypeError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        layer = cls(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
            **kwargs,
        )
        with torch.no_grad():
            layer.set_spatial_weight(linear.weight[:, :, None, None])
            if linear.bias is not None and layer.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer.train(linear.training)

    def _empty_input(self, x: Tensor) -> Tensor:
        """``nn.Linear``'s empty output for an input without samples or tokens, every parameter with a zero
        gradient (:mod:`freqdyn.layers._common.empty_batch`).
        """
        return tie_to_parameters(F.linear(x, x.new_zeros(self.out_features, self.in_features)), self)


class FDLinear(TraceOnly, LinearFourierBase):
    """Drop-in ``nn.Linear`` with a Fourier Disjoint Weight mixed per sample by KSM attentions.

    Input (B, ..., in_features) -> output (B, ..., out_features). The first dimension is the sample: the
    attentions read the mean over all other positions (tokens), and every sample gets its own
    (out_features, in_features) weight. The weight spectrum is the rfft2 of the (O, I) matrix (FDConv with
    a 1x1 kernel: same parameters, state-dict keys and ``freq_grouping``); there is no spatial head and no
    FBM. An ``nn.Linear`` state_dict loads by conversion, as into :class:`FDConv`. The keyword options are
    :class:`FDConv`'s (``ratio_scaling='official'`` for the authors' P > 1 scaling included).

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        kernel_num, param_ratio, reduction, kernel_temp, temp, att_multi, ksm_act, use_ksm_local, synthesis,
            freq_grouping, attention_norm, ratio_scaling: as :class:`FDConv` (keyword only).
        device, dtype: factory arguments.

    Shape:
        - Input: (B, ..., in_features); the first dimension is the sample.
        - Output: (B, ..., out_features), in the input's dtype.

    Differs from the authors' (docs/fdconv.md, "Differences from the official code"), whose checkpoints still load
    with ``strict=True``:
        - neutral start: every attention head at zero, so :meth:`from_linear` is exact;
        - ``param_ratio > 1`` averages the P copies unless ``ratio_scaling='official'``;
        - the attentions run in float32 for half and bfloat16 layers, and a batch of one trains.

    Examples:
        >>> layer = FDLinear(64, 32, kernel_num=4)
        >>> layer(torch.randn(2, 10, 64)).shape
        torch.Size([2, 10, 32])
    """

    KSM_Global: KernelSpatialModulationGlobal

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        kernel_num: int | None = DEFAULTS.kernel_num,
        param_ratio: int = DEFAULTS.param_ratio,
        reduction: float = DEFAULTS.reduction,
        kernel_temp: float = DEFAULTS.kernel_temp,
        temp: float | None = DEFAULTS.temp,
        att_multi: float = DEFAULTS.att_multi,
        ksm_act: str = DEFAULTS.ksm_act,
        use_ksm_local: bool = DEFAULTS.use_ksm_local,
        synthesis: str = DEFAULTS.synthesis,
        freq_grouping: str = DEFAULTS.freq_grouping,
        attention_norm: str = DEFAULTS.attention_norm,
        ratio_scaling: str = DEFAULTS.ratio_scaling,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        in_features, out_features = self._set_features(in_features, out_features)
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
        self._build_fourier(in_features, out_features, (1, 1), 1, options, device, dtype)
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s initialisation for weight and bias; attention heads to their neutral zeros."""
        self._reset_fourier(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        check_features_last(x, self.in_features, type(self).__name__)
        if not x.numel():  # no sample, or samples without tokens: nn.Linear's empty output
            return self._empty_input(x)
        batch = x.shape[0]
        tokens = x if x.dim() == 3 else reshaped(x, batch, math.prod(x.shape[1:-1]), self.in_features)
        pooled = mean_pool(tokens, (1,), compute_dtype(x.dtype))  # the attentions run in float32 for half
        att = self.KSM_Global(pooled)
        if self._takes_kernel_function(batch, att):
            keep = not compiling() and keeps_kernels(
                batch, self.out_features * self.in_features, tokens.shape[1] * self.in_features
            )
            y = self._kernel_function(
                tokens,
                pooled,
                att,
                keep=keep,
                on_features=False,
                stride=(1, 1),
                padding=(0, 0),
                dilation=(1, 1),
                linear=True,
            )
        else:
            weight = self.modulated(pooled, att).weight  # (B or 1, O, I, 1, 1)
            weight = as_dtype(reshaped(weight, weight.shape[0], self.out_features, self.in_features), x.dtype)
            # one bmm (torch.matmul of 3-D operands dispatches ten more ops), of the kernels transposed
            transposed = weight.transpose(1, 2)
            y = torch.bmm(tokens, transposed if weight.shape[0] == batch else transposed.expand(batch, -1, -1))
        if self.bias is not None:
            y = y + as_dtype(self.bias, y.dtype)
        return y if x.dim() == 3 else reshaped(y, *x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, {self._fourier_repr()}"
        )
