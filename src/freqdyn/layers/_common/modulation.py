"""The one place where per-sample attentions meet a kernel and the features: every dynamic layer builds its
per-sample kernels (FDConv by synthesis, DY-Conv / CondConv / ODConv by mixing a bank) and hands them here.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .attention_heads import Attentions
from .device_dtype import as_dtype


class Modulated(NamedTuple):
    """``conv(features, weight) * out_scale[:, :, None, None]`` (``out_scale`` ``None``: 1) is the modulated conv."""

    weight: Tensor  # (B or 1, O, I / groups, kh, kw)
    features: Tensor | None  # the input, channel attention applied when it goes to the features
    out_scale: Tensor | None  # (B, O) the filter attention when it goes to the output


def apply_attentions(
    weight: Tensor,
    att: Attentions,
    groups: int,
    *,
    local: Tensor | None = None,
    features: Tensor | None = None,
    inplace: bool = False,
) -> Modulated:
    """Apply ``att``'s spatial (B, kh * kw), channel (B, I) and filter (B, O) attentions and a per-element ``local``
    factor (broadcastable to ``weight``) to per-sample kernels ``weight`` (B or 1, O, I / groups, kh, kw).

    The spatial and local factors always go into the kernel. With ``features`` (B, I, H, W) the channel attention
    scales them and the filter attention is returned as ``out_scale`` (cheaper where B * O * I * kh * kw exceeds
    B * (I + O) * H * W); without, both go into the kernel. ``inplace`` (no autograd) reuses ``local`` and writes
    the product into a fresh contiguous kernel, so that the conv needs no layout copy of it.
    """
    if not inplace:  # the conv's layout: each product below (and its gradient) takes its first operand's
        weight = weight.contiguous()
    factor = local
    if att.spatial is not None:
        spatial = att.spatial.view(att.spatial.shape[0], 1, 1, *weight.shape[-2:])
        factor = spatial if factor is None else (factor.mul_(spatial) if inplace else factor * spatial)
    if factor is not None:
        if inplace:
            shape = [b if a == 1 else a for a, b in zip(weight.shape, factor.shape, strict=True)]  # both 5-D
            weight = torch.mul(weight, factor, out=weight.new_empty(shape))
        else:
            weight = weight * factor
    out_scale = None
    if att.channel is not None:
        if features is None:
            batch, out_channels, per_group = att.channel.shape[0], weight.shape[1], weight.shape[2]
            if groups == 1:  # views: one dispatched op each way
                channel = att.channel.view(batch, 1, per_group, 1, 1)
            else:
                channel = (
                    att.channel.reshape(batch, groups, 1, per_group)
                    .expand(batch, groups, out_channels // groups, per_group)
                    .reshape(batch, out_channels, per_group, 1, 1)
                )
            weight = weight * channel
        else:
            features = features * as_dtype(att.channel.view(*att.channel.shape, 1, 1), features.dtype)
    if att.filter is not None:
        if features is None:
            weight = weight * att.filter.view(*att.filter.shape, 1, 1, 1)
        else:
            out_scale = att.filter
    return Modulated(weight, features, out_scale)
