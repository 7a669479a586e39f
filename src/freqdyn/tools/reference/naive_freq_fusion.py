"""Naive FreqFusion forward, structured as the reference code computes it (hr size exactly 2x lr size).

Reassembly through the unfold formulation (:func:`naive_carafe`) followed by nearest interpolation, kernel
normalisation by softmax / window / renormalisation, and the offset generator with the reference's
``init_pos`` and lr-normalised sampling grid. It shares only the parameters with :class:`FreqFusion`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...layers.freqfusion.fusion import FreqFusion
from ...layers.freqfusion.sampler import LocalSimGuidedSampler
from .naive_carafe import naive_carafe as carafe_unfold


def _normalise(mask: Tensor, k: int, window: Tensor | None) -> Tensor:
    n, c, h, w = mask.shape
    mask = F.softmax(mask.view(n, c // (k * k), -1, h, w), dim=2)
    mask = mask.view(n, -1, k, k, h, w).permute(0, 1, 4, 5, 2, 3)
    if window is not None:
        mask = mask * window.reshape(k, k)
        mask = mask / mask.sum(dim=(-1, -2), keepdim=True)
    return mask.permute(0, 1, 4, 5, 2, 3).reshape(n, c, h, w)


def _similarity(x: Tensor, k: int = 3, dilation: int = 2) -> Tensor:
    b, c, h, w = x.shape
    unfolded = F.unfold(x, k, padding=(k // 2) * dilation, dilation=dilation).reshape(b, c, k * k, h, w)
    sim = F.cosine_similarity(unfolded[:, :, k * k // 2 : k * k // 2 + 1], unfolded, dim=1)
    return torch.cat((sim[:, : k * k // 2], sim[:, k * k // 2 + 1 :]), dim=1)


def _naive_sample(s: LocalSimGuidedSampler, hr_x: Tensor, lr_x: Tensor, feat: Tensor) -> Tensor:
    hr_x, lr_x = s.norm_hr(hr_x), s.norm_lr(lr_x)
    if s.direction_feat == "sim":  # the SegNeXt copy: offsets from the similarities, scales from the features
        hr_sim, lr_sim, hr_scale, lr_scale = _similarity(hr_x), _similarity(lr_x), hr_x, lr_x
    else:
        hr_sim = hr_scale = torch.cat([hr_x, _similarity(hr_x)], dim=1)
        lr_sim = lr_scale = torch.cat([lr_x, _similarity(lr_x)], dim=1)
    h = torch.arange(-0.5, 1.0) / 2
    init_pos = (
        torch.stack(torch.meshgrid([h, h], indexing="ij")).transpose(1, 2).repeat(1, s.groups, 1).reshape(1, -1, 1, 1)
    )
    offset = (s.offset(lr_sim) + F.pixel_unshuffle(s.hr_offset(hr_sim), 2)) * torch.sigmoid(
        s.direct_scale(lr_scale) + F.pixel_unshuffle(s.hr_direct_scale(hr_scale), 2)
    ) + init_pos.to(feat)
    b, _, hh, ww = offset.shape
    offset = offset.view(b, 2, -1, hh, ww)
    coords = torch.stack(torch.meshgrid([torch.arange(ww) + 0.5, torch.arange(hh) + 0.5], indexing="ij"))
    coords = coords.transpose(1, 2).unsqueeze(1).unsqueeze(0).to(feat)
    normaliser = torch.tensor([ww, hh], dtype=feat.dtype).view(1, 2, 1, 1, 1)
    coords = 2 * (coords + offset) / normaliser - 1
    coords = F.pixel_shuffle(coords.view(b, -1, hh, ww), 2).view(b, 2, -1, 2 * hh, 2 * ww)
    coords = coords.permute(0, 2, 3, 4, 1).flatten(0, 1)
    out = F.grid_sample(
        feat.reshape(b * s.groups, -1, feat.shape[-2], feat.shape[-1]),
        coords,
        mode="bilinear",
        align_corners=False,
        padding_mode="border",
    )
    return out.view(b, -1, 2 * hh, 2 * ww)


def naive_freq_fusion(m: FreqFusion, hr_feat: Tensor, lr_feat: Tensor) -> tuple[Tensor, Tensor]:
    """Reference output of :class:`FreqFusion` for hr = 2 x lr, every option, in the reference code's order.

    Where freqdyn fixes the reference (``use_high_pass=False`` with ``comp_feat_upsample``, which raised, and
    ``use_low_pass=False``, which was ignored), it follows the fixed definition in the layer's docstring.
    """
    lk, hk, g = m.lowpass_kernel, m.highpass_kernel, m.up_group

    def naive_carafe(x: Tensor, kernels: Tensor, k: int, groups: int, scale: int) -> Tensor:
        return carafe_unfold(x, kernels, k, groups, scale, m.carafe_padding)

    def nearest(x: Tensor) -> Tensor:
        return F.interpolate(x, size=size, mode="nearest")

    size = hr_feat.shape[-2:]
    enc_lp: Any = m.content_encoder
    enc_hp: Any = m.content_encoder2  # set when use_high_pass
    comp_hr, comp_lr = m.hr_channel_compressor(hr_feat), m.lr_channel_compressor(lr_feat)
    mask_hr = None
    if not m.semi_conv:
        comp = nearest(comp_lr) + comp_hr
        mask_lr = enc_lp(comp)
        if m.use_high_pass:
            mask_hr = enc_hp(comp)
    elif not m.comp_feat_upsample:
        mask_lr = enc_lp(comp_hr) + nearest(enc_lp(comp_lr))
        if m.use_high_pass:
            mask_hr = enc_hp(comp_hr) + nearest(enc_hp(comp_lr))
    else:
        if m.use_high_pass:
            mask_hr_hr = enc_hp(comp_hr)
            init = _normalise(mask_hr_hr, hk, m.hamming_highpass)
            comp_hr = comp_hr + comp_hr - naive_carafe(comp_hr, init, hk, g, 1)
        mask_lr_hr = enc_lp(comp_hr)
        init = _normalise(mask_lr_hr, lk, m.hamming_lowpass)
        mask_lr = mask_lr_hr + nearest(naive_carafe(enc_lp(comp_lr), init, lk, g, 2))
        if m.use_high_pass:
            init = _normalise(mask_lr, lk, m.hamming_lowpass)
            mask_hr = mask_hr_hr + nearest(naive_carafe(enc_hp(comp_lr), init, lk, g, 2))
    align = None if m.upsample_mode == "nearest" else m.align_corners
    if not m.use_low_pass:
        lr_out = F.interpolate(lr_feat, size=size, mode=m.upsample_mode, align_corners=align)
    elif m.semi_conv:
        lr_out = naive_carafe(lr_feat, _normalise(mask_lr, lk, m.hamming_lowpass), lk, g, 2)
    else:
        resized = F.interpolate(lr_feat, size=size, mode=m.upsample_mode, align_corners=align)
        lr_out = naive_carafe(resized, _normalise(mask_lr, lk, m.hamming_lowpass), lk, g, 1)
    if mask_hr is not None:
        high = hr_feat - naive_carafe(hr_feat, _normalise(mask_hr, hk, m.hamming_highpass), hk, g, 1)
        hr_feat = high + hr_feat if m.hr_residual else high
    if m.dysampler is not None:
        lr_out = _naive_sample(m.dysampler, comp_hr, comp_lr, lr_out)
    return hr_feat, lr_out
