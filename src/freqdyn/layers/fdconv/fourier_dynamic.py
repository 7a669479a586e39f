"""Shared core of FDConv and FDLinear: a Fourier Disjoint Weight mixed per sample by KSM attentions."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Protocol, cast

import torch
import torch.nn as nn
from torch import Tensor

from .._common.attention_heads import Attentions
from .._common.checks import check_int, check_positive, check_real
from .._common.conv_contract import reset_bias
from .._common.device_dtype import as_dtype, factory_kwargs, scalar
from .._common.modulation import Modulated, apply_attentions
from .._common.program_mode import (
    compiling,
    compute_dtype,
    has_hooks,
    may_checkpoint,
    may_overwrite,
    may_use_custom_kernels,
)
from .._compat import restore_kernel_shape
from .kernel_conv import KernelPlan, kernel_conv
from .kernel_spatial_modulation import (
    KernelSpatialModulationGlobal,
    KernelSpatialModulationLocal,
)
from .spectrum import frequency_groups, group_index_dtype, matrix_to_weight, weight_to_matrix
from .synthesis import SYNTHESES, fixed_matrix, group_basis, group_index, synthesise, use_basis

RATIO_SCALINGS = ("mean", "official")
MAX_ATT_MULTI = 16.0  # the largest att_multi: channel, filter, spatial and local gates can each reach it


@dataclasses.dataclass(frozen=True, kw_only=True)
class FourierOptions:
    """The Fourier-weight and KSM options shared by :class:`FDConv` and :class:`FDLinear` (see FDConv's Args),
    by keyword only; its defaults (:data:`DEFAULTS`) are the layers' signature defaults.
    """

    kernel_num: int | None = 64
    param_ratio: int = 1
    reduction: float = 0.0625
    kernel_temp: float = 1.0
    temp: float | None = None
    att_multi: float = 2.0
    ksm_act: str = "sigmoid"
    use_ksm_local: bool = True
    synthesis: str = "auto"
    freq_grouping: str = "official"
    attention_norm: str = "batch"
    ratio_scaling: str = "mean"

    def validated(self) -> FourierOptions:
        """These options with numbers checked and normalised, or a ``ValueError`` naming the bad one."""
        if self.synthesis not in SYNTHESES:
            raise ValueError(f"synthesis must be one of {SYNTHESES}, got {self.synthesis!r}")
        if self.ratio_scaling not in RATIO_SCALINGS:
            raise ValueError(f"ratio_scaling must be one of {RATIO_SCALINGS}, got {self.ratio_scaling!r}")
        att_multi = check_positive(self.att_multi, "att_multi")
        if att_multi > MAX_ATT_MULTI:
            raise ValueError(
                f"att_multi must be at most {MAX_ATT_MULTI:g} (up to four such gates multiply the kernel: "
                f"{MAX_ATT_MULTI:g}**4 times it at most; the official value is 2), got {att_multi!r}"
            )
        return dataclasses.replace(
            self,
            kernel_num=None if self.kernel_num is None else check_int(self.kernel_num, "kernel_num"),
            param_ratio=check_int(self.param_ratio, "param_ratio"),
            reduction=check_real(self.reduction, "reduction", 0.0),
            kernel_temp=check_positive(self.kernel_temp, "kernel_temp"),
            temp=None if self.temp is None else check_positive(self.temp, "temp"),
            att_multi=att_multi,
        )


DEFAULTS = FourierOptions()


class GlobalAttention(Protocol):
    """What :class:`FourierDynamicBase` needs of its ``KSM_Global``: pooled (B, I) -> :class:`Attentions`, with
    the kernel attention normalised to sum to 1 at neutral (alpha carries the rest).
    """

    @property
    def kernel_fc(self) -> nn.Module | None: ...

    def __call__(self, pooled: Tensor) -> Attentions: ...

    def reset_parameters(self) -> None: ...

    def zero_heads_(self) -> None: ...


class FourierDynamicBase(nn.Module):
    """Holds ``dft_weight`` (P, O*kh, I/g*kw // 2 + 1, 2), the frequency groups and the KSM branches.

    The per-sample kernel is W_b = alpha * sum_{p,g} kappa[b, p, g] * irfft2(dft_weight[p] on group g),
    with alpha = max(min(O, I) // 2, 1) * K. At the neutral attention kappa = 1 / (K * P) every copy adds
    1/P of the source kernel, so the layer equals its source conv for any param_ratio P. The official alpha
    also multiplies by P (``ratio_scaling='official'``: the copies add up, so an authors' P > 1 checkpoint
    computes P times what the default ``'mean'`` computes with the same weights; their converted layers start
    P times their source). With ``'official'``, :meth:`spectrum_of` divides by P too, so a converted or
    pretrained-loaded layer still starts as its source. The authors' Qwen file scales by P once more (P ** 2
    beside ``'mean'``: :attr:`official_ratio_power`).

    The sum is linear in kappa, so it is computed either by (a) gathering kappa onto the spectrum and one
    inverse FFT per sample, or (b) a matmul with the spatial basis of the P*K group kernels, built from the
    current ``dft_weight`` at every call (nothing is cached, so the output always follows the weights);
    ``synthesis='auto'`` picks the cheaper by shape.

    Loading a state_dict: a checkpoint without ``freq_group`` (the authors' code keeps the group order in a
    non-persistent buffer) keeps the order this layer computed at construction, and a plain convolution /
    linear ``weight`` in place of ``dft_weight`` is converted on load as :meth:`set_spatial_weight` does,
    with the attentions set neutral (:meth:`neutralise_`), so the layer computes the pretrained function.
    """

    dft_weight: Tensor
    freq_group: Tensor
    KSM_Global: GlobalAttention
    KSM_Local: KernelSpatialModulationLocal | None
    bypass_hooks = False  # set while a checkpoint recomputes the kernels in backward: submodule hooks stay silent
    official_ratio_power = 1  # 'official' scales the kernel by P ** this beside 'mean' (the authors' alpha has P)

    def _build_fourier(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        groups: int,
        options: FourierOptions,
        device: torch.device | None,
        dtype: torch.dtype | None,
    ) -> None:
        """Create ``dft_weight``, ``freq_group``, ``KSM_Global`` and ``KSM_Local`` for an (O, I // groups, kh, kw)
        kernel.
        """
        o = options.validated()
        kernel_num, kernel_temp = o.kernel_num, o.kernel_temp
        if kernel_num is None:
            kernel_num = max(out_channels // 2, 1)
            kernel_temp = math.sqrt(kernel_num * o.param_ratio)
        o = dataclasses.replace(o, kernel_num=kernel_num)
        self._build_spectrum(in_channels, out_channels, kernel_size, groups, o, device, dtype)
        kw_ = factory_kwargs(device, dtype)
        self.KSM_Global = KernelSpatialModulationGlobal(
            in_channels,
            out_channels,
            kernel_size,
            groups,
            self.num_mixed,
            reduction=o.reduction,
            temp=kernel_temp if o.temp is None else o.temp,
            kernel_temp=kernel_temp,
            att_multi=o.att_multi,
            act=o.ksm_act,
            norm=o.attention_norm,
            **kw_,
        )
        self.KSM_Local = (
            KernelSpatialModulationLocal(in_channels, out_channels, kernel_size, groups, o.att_multi, o.ksm_act, **kw_)
            if o.use_ksm_local
            else None
        )

    def _build_spectrum(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        groups: int,
        o: FourierOptions,
        device: torch.device | None,
        dtype: torch.dtype | None,
    ) -> None:
        """Create ``dft_weight`` and ``freq_group`` (and the constants of the synthesis) from validated options
        with a set ``kernel_num``; the attentions are the caller's.
        """
        kernel_num = cast(int, o.kernel_num)
        kh, kw = kernel_size
        rows, cols = out_channels * kh, in_channels // groups * kw
        self.kernel_num, self.param_ratio, self.synthesis = kernel_num, o.param_ratio, o.synthesis
        self.freq_grouping = o.freq_grouping
        self.spectrum_shape = (rows, cols)
        self.kernel_shape = (out_channels, in_channels // groups, kh, kw)
        self.ratio_scaling = o.ratio_scaling
        # the authors' alpha also multiplies by P (by P ** 2 in effect in their Qwen file: official_ratio_power)
        copies = o.param_ratio**self.official_ratio_power if o.ratio_scaling == "official" else 1
        self.spectral_scale = max(min(in_channels, out_channels) // 2, 1) * copies
        self.alpha = self.spectral_scale * kernel_num
        kw_ = factory_kwargs(device, dtype)
        self.register_buffer(
            "freq_group", torch.empty(rows, cols // 2 + 1, dtype=group_index_dtype(kernel_num), device=device)
        )  # filled by _reset_fourier
        self.dft_weight = nn.Parameter(torch.empty(o.param_ratio, rows, cols // 2 + 1, 2, **kw_))

    def _reset_fourier(self, bias: Tensor | None) -> None:
        """``nn.Conv2d`` / ``nn.Linear`` init of the kernel (as a spectrum) and bias; KSM heads to zero; the
        frequency groups computed (also after a meta-device build).
        """
        self.freq_group.copy_(frequency_groups(*self.spectrum_shape, self.kernel_num, self.freq_grouping))
        weight = torch.empty(self.kernel_shape, device=self.dft_weight.device)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.set_spatial_weight(weight)
        self.KSM_Global.reset_parameters()
        if self.KSM_Local is not None:
            self.KSM_Local.reset_parameters()
        reset_bias(bias, weight[0].numel())

    @torch.no_grad()
    def spectrum_of(self, weight: Tensor) -> Tensor:
        """``dft_weight`` (P, rows, cols // 2 + 1, 2) whose neutral layer computes the kernel ``weight``.

        ``weight`` is (O, I // groups, kh, kw), or (O, I) for a 1x1 kernel (an ``nn.Linear`` weight).
        """
        expected = self.kernel_shape
        if not self.is_plain_weight(weight):
            raise ValueError(f"expected a weight of shape {expected}, got {tuple(weight.shape)}")
        work = compute_dtype(weight.dtype)
        spectrum = torch.fft.rfft2(weight_to_matrix(weight.reshape(expected).to(work))) / self.spectral_scale
        stacked = torch.stack([spectrum.real, spectrum.imag], dim=-1)
        return stacked.expand_as(self.dft_weight).to(self.dft_weight.dtype)

    def is_plain_weight(self, weight: Tensor) -> bool:
        """Whether ``weight`` is this layer's kernel: (O, I // groups, kh, kw), or (O, I) for a 1x1 kernel."""
        expected = self.kernel_shape
        return tuple(weight.shape) == expected or (expected[2:] == (1, 1) and tuple(weight.shape) == expected[:2])

    @torch.no_grad()
    def set_spatial_weight(self, weight: Tensor) -> None:
        """Store a spatial kernel (O, I // groups, kh, kw) so that the neutral layer reproduces it exactly."""
        self.dft_weight.copy_(self.spectrum_of(weight))

    @torch.no_grad()
    def neutralise_(self) -> None:
        """Zero every attention head and the KSM-Local conv: the layer becomes a static conv."""
        self.KSM_Global.zero_heads_()
        if self.KSM_Local is not None:
            self.KSM_Local.conv.weight.zero_()

    def spatial_weight(self) -> Tensor:
        """The kernel at neutral attention, (O, I // groups, kh, kw): the inverse of :meth:`set_spatial_weight`."""
        neutral = self.dft_weight.new_full((1, self.num_mixed), 1.0 / self.num_mixed)
        return self.dynamic_weight(neutral if self.KSM_Global.kernel_fc is not None else None)[0]

    def frequency_kernels(self) -> Tensor:
        """Spatial kernels of the P*K disjoint frequency groups, (P, K, O, I // groups, kh, kw), scaled by alpha.

        Attention kappa[p, g] on group g of copy p contributes kappa[p, g] times that kernel.
        """
        basis = self._basis(compute_dtype(self.dft_weight.dtype)) * self.alpha
        return matrix_to_weight(basis.reshape(self.param_ratio, self.kernel_num, *self.spectrum_shape), self.kernel_hw)

    @property
    def num_mixed(self) -> int:
        """P * K: the group kernels the attention mixes (``param_ratio`` copies of ``kernel_num`` groups)."""
        return self.param_ratio * self.kernel_num

    @property
    def kernel_hw(self) -> tuple[int, int]:
        """(kh, kw) of the spatial kernel ((1, 1) for the linear layers)."""
        return self.kernel_shape[2], self.kernel_shape[3]

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        restore_kernel_shape(self)

    def _basis(self, work: torch.dtype) -> Tensor:
        """(P*K, rows*cols): the inverse FFT of each frequency group of each copy on its own."""
        return group_basis(as_dtype(self.dft_weight, work), self.freq_group, self.kernel_num, self.spectrum_shape)

    def dynamic_weight(self, kernel: Tensor | None, gain: float = 1.0) -> Tensor:
        """Per-sample kernels (B, O, I // groups, kh, kw) from the kernel attention (B, P*K); ``None`` when
        K*P == 1 gives the fixed kernel (1, O, I // groups, kh, kw). Computed in float32 for half dtypes
        (:mod:`~freqdyn.layers.fdconv.synthesis`).

        ``gain`` scales the result at no cost (it is applied to the attention, the synthesis being linear).
        """
        work = compute_dtype(self.dft_weight.dtype)
        dft = as_dtype(self.dft_weight, work)
        with torch.autocast(self.dft_weight.device.type, enabled=False):
            if kernel is None:
                return matrix_to_weight(fixed_matrix(dft, self.spectrum_shape) * (self.alpha * gain), self.kernel_hw)
            kappa = as_dtype(kernel, work)
            kappa = kappa * scalar(self.alpha * gain, kappa)
            basis = use_basis(self.synthesis, kappa.shape[0], self.num_mixed, self.spectrum_shape, compiling())
            matrix = synthesise(kappa, dft, self.freq_group, self.kernel_num, self.spectrum_shape, basis)
        return matrix_to_weight(matrix, self.kernel_hw)

    def modulated(
        self,
        pooled: Tensor,
        att: Attentions,
        groups: int = 1,
        features: Tensor | None = None,
        local: Tensor | None = None,
    ) -> Modulated:
        """The per-sample kernels synthesised from the kernel attention, with KSM-Local (or ``local``, a factor
        broadcastable to the kernel) and the other attentions applied by :func:`apply_attentions`.

        Without autograd (and outside ``torch.func`` transforms and tracing) the factors are combined in place and
        the product is written straight into a contiguous kernel, so the conv needs no layout copy of the
        per-sample kernels (the largest tensors of wide layers on small maps).
        """
        ksm_local = self.KSM_Local
        # the local attention's constant multiplier (att_multi for 'sigmoid') goes into the synthesis for free
        weight = self.dynamic_weight(att.kernel, 1.0 if ksm_local is None else ksm_local.gain)
        inplace = may_overwrite()
        if ksm_local is not None:
            local = (ksm_local.forward if self.bypass_hooks else ksm_local)(pooled, with_gain=False)
        return apply_attentions(weight, att, groups, local=local, features=features, inplace=inplace)

    def _takes_kernel_function(self, batch: int, att: Attentions) -> bool:
        """Whether the forward takes :func:`~freqdyn.layers.fdconv.kernel_conv.kernel_conv`: in training outside
        ``torch.func`` transforms and traces, or under ``torch.compile`` (its one opaque operator, also in inference);
        a kernel attention synthesised by the FFT route (compiled: unless ``synthesis='basis'``, whatever the batch);
        no hook on KSM-Local (whose modules the Function does not call).
        """
        local = self.KSM_Local
        if compiling():
            route_ok = self.synthesis != "basis" and may_use_custom_kernels()
        else:
            route_ok = may_checkpoint() and not use_basis(
                self.synthesis, batch, self.num_mixed, self.spectrum_shape, False
            )
        return (
            route_ok
            and att.kernel is not None
            and not (local is not None and any(has_hooks(m) for m in local.modules()))
        )

    def _kernel_function(
        self, x: Tensor, pooled: Tensor, att: Attentions, *, keep: bool, on_features: bool, **conv: Any
    ) -> Tensor:
        """:func:`~freqdyn.layers.fdconv.kernel_conv.kernel_conv` of x with this layer's kernels, from the pooled
        input (B, I) and the KSM-Global attentions; ``conv`` holds the plan's stride, padding, dilation (and
        ``linear``). Without bias.
        """
        work = compute_dtype(self.dft_weight.dtype)
        local = self.KSM_Local
        kappa = as_dtype(cast(Tensor, att.kernel), work)
        normed = taps = None
        if local is not None:
            normed, taps = as_dtype(local.normed(pooled), work), as_dtype(local.conv.weight, work)
        plan = KernelPlan(
            index=group_index(self.freq_group),
            scale=self.alpha * (1.0 if local is None else local.gain),
            kernel_num=self.kernel_num,
            size=self.spectrum_shape,
            kernel_hw=self.kernel_hw,
            local_pad=0 if local is None else cast(int, local.conv.padding[0]),
            local_act="sigmoid" if local is None else local.act,
            keep=keep,
            on_features=on_features,
            **conv,
        )
        spatial, channel, filter_ = (
            None if a is None else as_dtype(a, work) for a in (att.spatial, att.channel, att.filter)
        )
        return kernel_conv(x, kappa, self.dft_weight, normed, taps, spatial, channel, filter_, plan)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        if getattr(self, "dft_weight", None) is not None:
            # official checkpoints have no group assignment (a non-persistent buffer there): keep the computed one
            state_dict.setdefault(prefix + "freq_group", self.freq_group)
            weight = state_dict.get(prefix + "weight")
            if prefix + "dft_weight" not in state_dict and isinstance(weight, Tensor) and self.is_plain_weight(weight):
                state_dict[prefix + "dft_weight"] = self.spectrum_of(state_dict.pop(prefix + "weight"))
                self.neutralise_()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _fourier_repr(self) -> str:
        local = self.KSM_Local is not None
        scaling = "" if self.ratio_scaling == "mean" else f", ratio_scaling={self.ratio_scaling!r}"
        return f"kernel_num={self.kernel_num}, param_ratio={self.param_ratio}{scaling}, ksm_local={local}"
