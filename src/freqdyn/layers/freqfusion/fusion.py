"""FreqFusion: Frequency-aware Feature Fusion for Dense Image Prediction (Chen et al., TPAMI 2024, arXiv:2408.12879)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._common.checks import check_feature_map, check_int
from .._common.device_dtype import factory_kwargs
from .._common.trace_only import TraceOnly
from .carafe import PADDINGS as CARAFE_PADDINGS
from .carafe import carafe, carafe_together, source_size
from .sampler import DIRECTION_FEATS, LocalSimGuidedSampler


def hamming_window2d(size: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Outer product of two symmetric Hamming windows (numpy.hamming), shape (size, size)."""
    window = (
        torch.hamming_window(size, periodic=False, dtype=torch.float64)
        if size > 1
        else torch.ones(1, dtype=torch.float64)
    )
    return torch.outer(window, window).to(device=device, dtype=dtype or torch.get_default_dtype())


def normalise_kernels(logits: Tensor, kernel_size: int, window: Tensor | None) -> Tensor:
    """Kernel normaliser: (B, G * k * k, H, W) logits -> per-pixel kernels that sum to 1 in every group.

    softmax over the k * k taps, times the (k, k) window if given, renormalised.
    """
    batch, channels, height, width = logits.shape
    kernels = torch.softmax(logits.reshape(batch, channels // kernel_size**2, kernel_size**2, height, width), dim=2)
    if window is not None:
        kernels = kernels * window.reshape(1, 1, -1, 1, 1).to(kernels.dtype)
        kernels = kernels / kernels.sum(dim=2, keepdim=True)
    return kernels.reshape(batch, channels, height, width)


class FreqFusion(TraceOnly, nn.Module):
    """Fuses a high-resolution feature (B, hr_channels, H, W) with a low-resolution one (B, lr_channels, h, w).

    Returns ``(hr_out, lr_out)``, both at (H, W): ``hr_out`` is the hr feature with its high frequencies
    boosted by the adaptive high-pass filter (AHPF: ``hr + (hr - lowpass(hr))`` with ``hr_residual``),
    ``lr_out`` the lr feature upsampled by the adaptive low-pass filter (ALPF, CARAFE-style reassembly)
    and, with ``feature_resample``, resampled by the offset generator. In an FPN the fused map is
    ``hr_out + lr_out`` (:class:`FreqFusionFPN`). H, W may be 2h, 2w or one less / more (odd sizes).

    Options and defaults follow the reference code (its fixes: "Differs from the authors'" below). Checkpoints of the
    authors' code load with ``strict=True``: their inert ``dysampler.init_pos`` (the fixed
    sub-pixel grid, built in here) and, with ``hamming_window=False``, their ``hamming_*`` = [1.0] buffers
    are checked and dropped. With zero filter generators (:meth:`neutralise_`) the layer is a fixed filter:
    ``hr_out = 2 hr - hamming_blur(hr)`` and ``lr_out = nearest_up(hamming_blur(lr))``.

    Args:
        hr_channels, lr_channels: channels of the hr (B, hr_channels, H, W) and lr (B, lr_channels, h, w) maps.
        scale_factor: must be 1 (the reference forward ignores it).
        lowpass_kernel, highpass_kernel: odd sizes of the ALPF / AHPF reassembly kernels.
        up_group: kernel groups of the reassembly (channels of a group share kernels).
        encoder_kernel, encoder_dilation: the filter generators' conv (odd kernel).
        compressed_channels: width of the channel compressors that feed the generators.
        align_corners, upsample_mode: interpolation of the compressed lr map (``comp_feat_upsample=False``)
            and of lr without the ALPF (``use_low_pass=False``).
        feature_resample, feature_resample_group, feature_resample_norm: the offset generator (a
            :class:`LocalSimGuidedSampler` over ``feature_resample_group`` groups, with GroupNorm inputs).
        semi_conv: run the filter generators on each map separately and add their outputs (reference default);
            ``False`` runs them once on hr + nearest-upsampled lr.
        comp_feat_upsample: with ``semi_conv``, high-pass the compressed hr map first and upsample the lr
            generators' outputs with the ALPF (reference default); ``False`` upsamples them by nearest.
        use_high_pass, use_low_pass, hr_residual: switch the AHPF, the ALPF and the hr residual.
        hamming_window: multiply the normalised filters by a Hamming window.
        carafe_padding: ``'zeros'`` (mmcv's op, the default) or ``'reflect'`` borders of the reassembly.
        direction_feat: what the offset generator's convs read: ``'sim_concat'`` (the root ``FreqFusion.py``) or
            ``'sim'`` (the SegNeXt copy, whose released checkpoint needs it; :class:`LocalSimGuidedSampler`).

    Shape:
        - Input: hr (B, hr_channels, H, W) and lr (B, lr_channels, h, w), H and W twice h and w (up to one).
        - Output: ``(hr_out, lr_out)``: (B, hr_channels, H, W) and (B, lr_channels, H, W).

    Differs from the authors' (docs/freqfusion.md), whose checkpoints load with ``strict=True``:
        - ``up_group > 1``, ``use_high_pass=False`` with ``comp_feat_upsample``, ``use_low_pass=False`` and odd
          sizes work (the reference ignored groups and ``use_low_pass``);
        - the offset generator starts as the identity, and the reassembly never materialises the unfold tensor;
        - ``carafe_padding='zeros'`` is mmcv's CARAFE (the released models'); ``'reflect'`` the mmcv-less fallback.

    Examples:
        >>> fusion = FreqFusion(hr_channels=32, lr_channels=64)
        >>> hr_out, lr_out = fusion(torch.randn(1, 32, 32, 32), torch.randn(1, 64, 16, 16))
        >>> hr_out.shape, lr_out.shape  # both at the hr size; an FPN adds them after matching channels
        (torch.Size([1, 32, 32, 32]), torch.Size([1, 64, 32, 32]))
    """

    hamming_lowpass: Tensor | None
    hamming_highpass: Tensor | None

    def __init__(
        self,
        hr_channels: int,
        lr_channels: int,
        scale_factor: int = 1,
        lowpass_kernel: int = 5,
        highpass_kernel: int = 3,
        up_group: int = 1,
        encoder_kernel: int = 3,
        encoder_dilation: int = 1,
        compressed_channels: int = 64,
        align_corners: bool = False,
        upsample_mode: str = "nearest",
        feature_resample: bool = False,
        feature_resample_group: int = 4,
        comp_feat_upsample: bool = True,
        use_high_pass: bool = True,
        use_low_pass: bool = True,
        hr_residual: bool = True,
        semi_conv: bool = True,
        hamming_window: bool = True,
        feature_resample_norm: bool = True,
        carafe_padding: str = "zeros",
        direction_feat: str = "sim_concat",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        hr_channels, lr_channels = check_int(hr_channels, "hr_channels"), check_int(lr_channels, "lr_channels")
        compressed_channels = check_int(compressed_channels, "compressed_channels")
        up_group = check_int(up_group, "up_group")
        if check_int(scale_factor, "scale_factor") != 1:
            raise ValueError("scale_factor must be 1: the reference forward never uses other values")
        for name, k in (
            ("lowpass_kernel", lowpass_kernel),
            ("highpass_kernel", highpass_kernel),
            ("encoder_kernel", encoder_kernel),
        ):
            if check_int(k, name) % 2 == 0:  # an even encoder kernel would not keep the map's size
                raise ValueError(f"{name} must be odd and positive, got {k}")
        check_int(encoder_dilation, "encoder_dilation")
        if lr_channels % check_int(feature_resample_group, "feature_resample_group") and feature_resample:
            raise ValueError(
                f"lr_channels={lr_channels} (the resampled feature) is not divisible by "
                f"feature_resample_group={feature_resample_group}"
            )
        for name, c in (
            ("hr_channels", hr_channels),
            ("lr_channels", lr_channels),
            ("compressed_channels", compressed_channels),
        ):
            if c % up_group:
                raise ValueError(f"{name}={c} is not divisible by up_group={up_group}")
        if carafe_padding not in CARAFE_PADDINGS:
            raise ValueError(f"carafe_padding must be one of {CARAFE_PADDINGS}, got {carafe_padding!r}")
        if direction_feat not in DIRECTION_FEATS:
            raise ValueError(f"direction_feat must be one of {DIRECTION_FEATS}, got {direction_feat!r}")
        if upsample_mode not in ("nearest", "bilinear", "bicubic"):
            raise ValueError(f"upsample_mode must be nearest, bilinear or bicubic, got {upsample_mode!r}")
        kw = factory_kwargs(device, dtype)
        self.hr_channels, self.lr_channels = hr_channels, lr_channels
        self.lowpass_kernel, self.highpass_kernel, self.up_group = lowpass_kernel, highpass_kernel, up_group
        self.align_corners, self.upsample_mode = align_corners, upsample_mode
        self.comp_feat_upsample, self.use_high_pass, self.use_low_pass = comp_feat_upsample, use_high_pass, use_low_pass
        self.hr_residual, self.semi_conv, self.carafe_padding = hr_residual, semi_conv, carafe_padding
        self.hr_channel_compressor = nn.Conv2d(hr_channels, compressed_channels, 1, **kw)
        self.lr_channel_compressor = nn.Conv2d(lr_channels, compressed_channels, 1, **kw)
        padding = (encoder_kernel - 1) * encoder_dilation // 2

        def encoder(kernel: int) -> nn.Conv2d:
            return nn.Conv2d(
                compressed_channels,
                kernel * kernel * up_group,
                encoder_kernel,
                padding=padding,
                dilation=encoder_dilation,
                **kw,
            )

        self.content_encoder = encoder(lowpass_kernel)  # ALPF generator
        self.content_encoder2 = encoder(highpass_kernel) if use_high_pass else None  # AHPF generator
        self.dysampler = (
            LocalSimGuidedSampler(
                compressed_channels,
                feature_resample_group,
                encoder_kernel,
                norm=feature_resample_norm,
                direction_feat=direction_feat,
                **kw,
            )
            if feature_resample
            else None
        )
        if hamming_window:  # (1, 1, k, k) as in the reference state_dict; filled by reset_parameters
            self.register_buffer("hamming_lowpass", torch.empty(1, 1, lowpass_kernel, lowpass_kernel, **kw))
            self.register_buffer("hamming_highpass", torch.empty(1, 1, highpass_kernel, highpass_kernel, **kw))
        else:
            self.register_buffer("hamming_lowpass", None)
            self.register_buffer("hamming_highpass", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform compressors, N(0, 0.001) filter generators, zero biases (reference init); the Hamming
        windows computed (also after a meta-device build).
        """
        for window in (self.hamming_lowpass, self.hamming_highpass):
            if window is not None:
                with torch.no_grad():
                    window.copy_(hamming_window2d(window.shape[-1], dtype=torch.float64)[None, None])
        for conv in (self.hr_channel_compressor, self.lr_channel_compressor):
            nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        for conv in self._encoders():
            nn.init.normal_(conv.weight, std=0.001)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        if self.dysampler is not None:
            self.dysampler.reset_parameters()

    init_weights = reset_parameters

    def _encoders(self) -> list[nn.Conv2d]:
        return [c for c in (self.content_encoder, self.content_encoder2) if c is not None]

    def neutralise_(self) -> None:
        """Zero the filter generators (and the sampler's offsets): fixed Hamming filters, identity resampling."""
        with torch.no_grad():
            convs = self._encoders()
            if self.dysampler is not None:
                convs += [self.dysampler.offset, self.dysampler.hr_offset]
            for conv in convs:
                conv.weight.zero_()
                if conv.bias is not None:
                    conv.bias.zero_()

    def _carafe(self, x: Tensor, kernels: Tensor, kernel_size: int, groups: int, scale: int = 1) -> Tensor:
        return carafe(x, kernels, kernel_size, groups, scale, self.carafe_padding)

    def _lowpass(self, logits: Tensor) -> Tensor:
        return normalise_kernels(logits, self.lowpass_kernel, self.hamming_lowpass)

    def _highpass(self, logits: Tensor) -> Tensor:
        return normalise_kernels(logits, self.highpass_kernel, self.hamming_highpass)

    def _filters(
        self, comp_hr: Tensor, comp_lr: Tensor, lr_feat: Tensor
    ) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """Normalised ALPF and AHPF kernels at the hr size, the (possibly high-pass enhanced) compressed hr, and
        lr_feat low-passed to the hr size where the ALPF reassembles it together with the AHPF's lr logits.
        """
        size = comp_hr.shape[-2:]
        lk, g = self.lowpass_kernel, self.up_group
        enc_lp, enc_hp = self.content_encoder, self.content_encoder2

        def up(t: Tensor) -> Tensor:
            return F.interpolate(t, size=size, mode="nearest")

        if not self.semi_conv:
            comp = comp_hr + up(comp_lr)
            mask_lr, mask_hr = enc_lp(comp), None if enc_hp is None else enc_hp(comp)
        elif not self.comp_feat_upsample:
            mask_lr = enc_lp(comp_hr) + up(enc_lp(comp_lr))
            mask_hr = None if enc_hp is None else enc_hp(comp_hr) + up(enc_hp(comp_lr))
        else:
            mask_hr_hr = None if enc_hp is None else enc_hp(comp_hr)
            if mask_hr_hr is not None:
                comp_hr = 2 * comp_hr - self._carafe(comp_hr, self._highpass(mask_hr_hr), self.highpass_kernel, g)
            mask_lr_hr = enc_lp(comp_hr)
            lowpass = self._lowpass(mask_lr_hr + self._carafe(enc_lp(comp_lr), self._lowpass(mask_lr_hr), lk, g, 2))
            if enc_hp is None or mask_hr_hr is None:
                return lowpass, None, comp_hr, None
            # the reference normalises these ALPF logits twice (here and for the output); once is enough. The same
            # kernels reassemble lr_feat for the output: both in one pass
            if self.use_low_pass:
                mask_lr_up, lr_out = carafe_together((enc_hp(comp_lr), lr_feat), lowpass, lk, g, 2, self.carafe_padding)
            else:
                mask_lr_up, lr_out = self._carafe(enc_hp(comp_lr), lowpass, lk, g, 2), None
            return lowpass, self._highpass(mask_hr_hr + mask_lr_up), comp_hr, lr_out
        return self._lowpass(mask_lr), None if mask_hr is None else self._highpass(mask_hr), comp_hr, None

    def forward(self, hr_feat: Tensor, lr_feat: Tensor) -> tuple[Tensor, Tensor]:
        """hr_feat (B, hr_channels, H, W), lr_feat (B, lr_channels, h, w) -> (hr_out, lr_out), both (·, H, W)."""
        name = type(self).__name__
        check_feature_map(hr_feat, self.hr_channels, name)
        check_feature_map(lr_feat, self.lr_channels, name)
        if hr_feat.shape[0] != lr_feat.shape[0]:
            raise ValueError(f"{name}: batch sizes differ, hr {hr_feat.shape[0]} vs lr {lr_feat.shape[0]}")
        size = hr_feat.shape[-2:]
        source_size((size[0], size[1]), (lr_feat.shape[-2], lr_feat.shape[-1]), 2)
        comp_hr = self.hr_channel_compressor(hr_feat)
        comp_lr = self.lr_channel_compressor(lr_feat)
        lowpass, highpass, comp_hr, lr_out = self._filters(comp_hr, comp_lr, lr_feat)
        g = self.up_group
        if lr_out is None:
            lr_out = self._upsample(lr_feat, lowpass, size)
        if highpass is not None:
            high = hr_feat - self._carafe(hr_feat, highpass, self.highpass_kernel, g)
            hr_feat = high + hr_feat if self.hr_residual else high
        if self.dysampler is not None:
            lr_out = self.dysampler(comp_hr, comp_lr, lr_out)
        return hr_feat, lr_out

    def _upsample(self, lr_feat: Tensor, lowpass: Tensor, size: torch.Size) -> Tensor:
        """lr_feat at the hr size: low-passed by the ALPF (reassembled, or resized first without ``semi_conv``), or
        resized alone without ``use_low_pass``.
        """
        if not self.use_low_pass:
            return self._resize(lr_feat, size)
        if self.semi_conv:
            return self._carafe(lr_feat, lowpass, self.lowpass_kernel, self.up_group, 2)
        return self._carafe(self._resize(lr_feat, size), lowpass, self.lowpass_kernel, self.up_group)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        for name in ("hamming_lowpass", "hamming_highpass"):
            value = state_dict.get(prefix + name)
            if getattr(self, name) is None and isinstance(value, Tensor):  # the official hamming_window=False
                if value.numel() == 1 and value.item() == 1.0:
                    del state_dict[prefix + name]
                else:
                    error_msgs.append(f"{prefix + name}: a window was saved but this layer has hamming_window=False")
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def _resize(self, x: Tensor, size: torch.Size) -> Tensor:
        align = None if self.upsample_mode == "nearest" else self.align_corners
        return F.interpolate(x, size=size, mode=self.upsample_mode, align_corners=align)

    def extra_repr(self) -> str:
        return (
            f"hr_channels={self.hr_channels}, lr_channels={self.lr_channels}, lowpass_kernel={self.lowpass_kernel}, "
            f"highpass_kernel={self.highpass_kernel}, up_group={self.up_group}, semi_conv={self.semi_conv}, "
            f"comp_feat_upsample={self.comp_feat_upsample}, use_high_pass={self.use_high_pass}, "
            f"feature_resample={self.dysampler is not None}, carafe_padding={self.carafe_padding!r}"
        )
