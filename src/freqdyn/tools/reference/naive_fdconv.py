"""Naive FDConv forward, written the way the official code computes it.

Independent of the fast path wherever it matters: per-sample inverse FFT of a spectrum scattered into a
zero map, FBM through rfft2 / mask / irfft2, the KSM-Local mapping by explicit index arithmetic, and one
``F.conv2d`` per sample with the fully modulated kernel. It shares only the parameters and the stored
frequency-group assignment with :class:`freqdyn.FDConv`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ...layers._common.conv_args import explicit_padding
from ...layers.fdconv.conv import FDConv
from ...layers.fdconv.low_pass import band_masks
from .naive_norm import naive_attention_norm


def _act(logits: Tensor, act: str, multiplier: float) -> Tensor:
    return torch.sigmoid(logits) * multiplier if act == "sigmoid" else 1 + torch.tanh(logits)


def naive_lowpass(x: Tensor, k: int, rule: str = "official") -> Tensor:
    """Box low-pass max(|fy|, |fx|) < 0.5 / k of x (B, C, H, W) through the FFT, masks by ``rule``.

    The masks come from :func:`band_masks` (checked against the authors' masks in the golden tests); the
    filtering is the FFT definition, independent of FBM's separable operators.
    """
    height, width = x.shape[-2:]
    rows, cols = band_masks(height, width, (k,), rule)
    mask = (rows[0, :, None] & cols[0, None, :]).to(x.device)
    spectrum = torch.fft.rfft2(x, norm="ortho")
    return torch.fft.irfft2(spectrum * mask, s=(height, width), norm="ortho")


def _fbm(layer: FDConv, x: Tensor) -> Tensor:
    fbm = layer.FBM
    if fbm is None:
        raise ValueError("the layer has no FBM")
    g = fbm.spatial_group
    _b, c, _h, _w = x.shape
    previous, out = x, torch.zeros_like(x)
    convs: list[Any] = list(fbm.freq_weight_conv_list)
    for conv, k in zip(convs, fbm.k_list, strict=True):
        att = _act(F.conv2d(x, conv.weight, conv.bias, padding=conv.padding, groups=g), fbm.act, 2.0)
        att = att.repeat_interleave(c // g, dim=1)
        low = naive_lowpass(x, k, fbm.masks)
        out = out + att * (previous - low)
        previous = low
    return out + previous


def naive_fdconv(layer: FDConv, x: Tensor) -> Tensor:
    """Output of ``layer`` on x (B, C, H, W), computed sample by sample."""
    o, i, g = layer.out_channels, layer.in_channels, layer.groups
    kh, kw = layer.kernel_size
    ig, og = i // g, o // g
    rows, cols = layer.spectrum_shape
    ksm = layer.KSM_Global
    pooled = x.mean(dim=(2, 3))
    z = F.linear(pooled, ksm.fc.weight[:, :, 0, 0])
    z = naive_attention_norm(ksm.bn, z)
    z = ksm.relu.scale * F.relu(z) ** 2 + ksm.relu.bias

    def head(fc, temp, multiplier):
        return _act(F.linear(z, fc.weight[:, :, 0, 0], fc.bias) / temp, ksm.act, multiplier)

    ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    channel = head(ksm.channel_fc, ksm.temp, ksm.att_multi)
    filt = head(ksm.filter_fc, ksm.temp, ksm.att_multi) if ksm.filter_fc is not None else ones
    spatial = head(ksm.spatial_fc, ksm.temp, ksm.att_multi) if ksm.spatial_fc is not None else ones
    num = layer.param_ratio * layer.kernel_num  # an independent reference: not layer.num_mixed
    kernel = head(ksm.kernel_fc, ksm.kernel_temp, 2.0) / num if ksm.kernel_fc is not None else ones

    # coordinates of every coefficient, listed group after group (as the official `indices` buffer)
    group = layer.freq_group.long().flatten()
    order = torch.argsort(group, stable=True)
    coord_r, coord_c = order // (cols // 2 + 1), order % (cols // 2 + 1)
    group_sorted = group[order]

    # KSM-Local index map: factor of W[o, il, a, b] = L[(o % og)*kh*kw + a*kw + b, (o // og)*ig + il]
    oo, ii, aa, bb = torch.meshgrid(
        torch.arange(o), torch.arange(ig), torch.arange(kh), torch.arange(kw), indexing="ij"
    )
    q_index = (oo % og) * kh * kw + aa * kw + bb
    p_index = (oo // og) * ig + ii

    x_in = _fbm(layer, x) if layer.FBM is not None else x
    outputs = []
    for s in range(x.shape[0]):
        spectrum = torch.zeros(rows, cols // 2 + 1, 2, dtype=layer.dft_weight.dtype, device=x.device)
        for p in range(layer.param_ratio):
            att = kernel[s, p * layer.kernel_num + group_sorted] if ksm.kernel_fc is not None else kernel[s, 0]
            spectrum[coord_r, coord_c] += layer.dft_weight[p, coord_r, coord_c] * layer.alpha * att[..., None]
        matrix = torch.fft.irfft2(torch.complex(spectrum[..., 0], spectrum[..., 1]), s=(rows, cols))
        weight = matrix.reshape(o, kh, ig, kw).permute(0, 2, 1, 3)
        if layer.KSM_Local is not None:
            loc = layer.KSM_Local
            normed = F.layer_norm(pooled[s : s + 1], (i,), loc.norm.weight, loc.norm.bias, loc.norm.eps)
            logits = F.conv1d(normed[:, None], loc.conv.weight, padding=loc.conv.padding)[0]
            weight = weight * _act(logits[q_index, p_index], loc.act, loc.att_multi)
        weight = weight * spatial[s].reshape(1, 1, kh, kw) if ksm.spatial_fc is not None else weight
        weight = weight * channel[s][p_index[:, :, 0, 0]][..., None, None] * filt[s].reshape(-1, 1, 1, 1)
        x_s = x_in[s : s + 1]
        padding = layer.padding
        if layer.padding_mode != "zeros":
            x_s = F.pad(x_s, explicit_padding(padding, layer.kernel_size, layer.dilation), mode=layer.padding_mode)
            padding = 0
        outputs.append(F.conv2d(x_s, weight, layer.bias, layer.stride, padding, layer.dilation, g))
    return torch.cat(outputs)
