"""FreqFusion's offset generator: a local-similarity guided sampler (FreqFusion §3.3, Chen et al., TPAMI 2024)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._common.device_dtype import factory_kwargs
from .._common.program_mode import compute_dtype


def local_similarity(x: Tensor, window: int = 3, dilation: int = 2) -> Tensor:
    """Cosine similarity of each pixel of x (B, C, H, W) to its window**2 - 1 neighbours -> (B, window**2 - 1, H, W).

    Neighbours are taken at ``dilation`` spacing, in row-major order without the centre; outside the map
    they are zero vectors (similarity 0).
    """
    unit = x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)
    height, width = x.shape[-2:]
    pad = window // 2 * dilation
    padded = F.pad(unit, [pad] * 4)
    sims = []
    for offset in range(window * window):
        if offset == window * window // 2:
            continue
        a, b = divmod(offset, window)
        neighbour = padded[..., a * dilation : a * dilation + height, b * dilation : b * dilation + width]
        sims.append((unit * neighbour).sum(dim=1))
    return torch.stack(sims, dim=1)


def _extend(x: Tensor, height: int, width: int) -> Tensor:
    """Replicate-pad x at the bottom / right to at least (height, width)."""
    dh, dw = max(height - x.shape[-2], 0), max(width - x.shape[-1], 0)
    return F.pad(x, [0, dw, 0, dh], mode="replicate") if dh or dw else x


def pixel_shuffle(x: Tensor, scale: int, inverse: bool = False) -> Tensor:
    """``F.pixel_shuffle`` (``inverse``: ``F.pixel_unshuffle``) of x (B, C, H, W), also for B = 0.

    torch 2.14 returns an empty batch unchanged from both ops; the same permutation as views is used there.
    """
    if x.shape[0]:
        return F.pixel_unshuffle(x, scale) if inverse else F.pixel_shuffle(x, scale)
    batch, channels, height, width = x.shape
    if inverse:
        parts = x.reshape(batch, channels, height // scale, scale, width // scale, scale).permute(0, 1, 3, 5, 2, 4)
        return parts.reshape(batch, channels * scale * scale, height // scale, width // scale)
    parts = x.reshape(batch, channels // scale**2, scale, scale, height, width).permute(0, 1, 4, 2, 5, 3)
    return parts.reshape(batch, channels // scale**2, height * scale, width * scale)


DIRECTION_FEATS = ("sim_concat", "sim")


class LocalSimGuidedSampler(nn.Module):
    """Resamples a high-resolution feature with offsets predicted from hr / lr features and their local similarity.

    Offsets are predicted at the low resolution for the 2 x 2 sub-pixels of every lr pixel (``lr_x`` path)
    plus a pixel-unshuffled high-resolution prediction (``hr_x`` path), each gated by a sigmoid "direct
    scale", in lr pixel units. At zero offsets the sampler returns ``feature`` unchanged (bilinear
    ``grid_sample`` at the pixel centres). The offset convs start at N(0, 0.001) and the direct-scale
    convs at zero, as the reference code intends (its outer re-initialisation overwrote them).

    ``direction_feat`` (the reference's name): ``'sim_concat'`` (the root ``FreqFusion.py``) feeds all four convs
    the normalised feature concatenated with its ``window**2 - 1`` local similarities; ``'sim'`` (the SegNeXt
    copy, from which the released SegNeXt + FreqFusion checkpoint comes) feeds the offset convs the similarities
    alone and the direct-scale convs the normalised feature alone.

    Args:
        channels: channels of the high-resolution feature.
        groups: offset groups (each with its own 2-D offsets).
        kernel_size: kernel of the offset and direct-scale convs.
        window: local-similarity window (its ``window**2 - 1`` neighbours).
        norm: group-normalise the features before the similarities.
        direction_feat: ``'sim_concat'`` or ``'sim'`` (above).
        device, dtype: factory arguments.

    Examples:
        >>> sampler = LocalSimGuidedSampler(16)
        >>> hr, lr = torch.randn(1, 16, 16, 16), torch.randn(1, 16, 8, 8)
        >>> torch.equal(sampler(hr, lr, hr), hr)  # offsets start near zero: nearly the identity
        False
        >>> sampler(hr, lr, hr).shape
        torch.Size([1, 16, 16, 16])
    """

    def __init__(
        self,
        channels: int,
        groups: int = 4,
        kernel_size: int = 1,
        window: int = 3,
        norm: bool = True,
        direction_feat: str = "sim_concat",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if groups < 1 or channels % groups:
            raise ValueError(f"feature_resample_group={groups} must divide the compressed channels ({channels})")
        if norm and (channels < 8 or channels % 8):
            raise ValueError(
                f"the sampler's GroupNorm(channels // 8, channels) needs channels divisible by 8, got {channels}"
            )
        if direction_feat not in DIRECTION_FEATS:
            raise ValueError(f"direction_feat must be one of {DIRECTION_FEATS}, got {direction_feat!r}")
        kw = factory_kwargs(device, dtype)
        self.groups, self.window, self.scale, self.direction_feat = groups, window, 2, direction_feat
        similarities = window * window - 1
        offset_in = similarities if direction_feat == "sim" else channels + similarities
        scale_in = channels if direction_feat == "sim" else channels + similarities

        def conv(features: int, out: int) -> nn.Conv2d:
            return nn.Conv2d(features, out, kernel_size, padding=kernel_size // 2, **kw)

        self.offset, self.direct_scale = conv(offset_in, 2 * groups * 4), conv(scale_in, 2 * groups * 4)
        self.hr_offset, self.hr_direct_scale = conv(offset_in, 2 * groups), conv(scale_in, 2 * groups)
        self.norm_hr = nn.GroupNorm(channels // 8, channels, **kw) if norm else nn.Identity()
        self.norm_lr = nn.GroupNorm(channels // 8, channels, **kw) if norm else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.offset, self.hr_offset):
            nn.init.normal_(conv.weight, std=0.001)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        for conv in (self.direct_scale, self.hr_direct_scale):
            nn.init.zeros_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        for norm in (self.norm_hr, self.norm_lr):
            if isinstance(norm, nn.GroupNorm):
                norm.reset_parameters()

    def official_init_pos(self) -> Tensor:
        """The reference's ``init_pos`` buffer (1, 2 * groups * 4, 1, 1): sub-pixel centres +-0.25 (lr pixels).

        The sampling grid here places every output pixel at its own centre, which is the same grid.
        """
        h = (torch.arange(self.scale, dtype=torch.float64) + 0.5) / self.scale - 0.5
        grid = torch.stack(torch.meshgrid(h, h, indexing="ij")).transpose(1, 2)
        return grid.repeat(1, self.groups, 1).reshape(1, -1, 1, 1)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        init_pos = state_dict.get(prefix + "init_pos")
        if isinstance(init_pos, Tensor):  # reference checkpoints carry the fixed grid as a buffer
            expected = self.official_init_pos()
            if init_pos.shape == expected.shape and torch.allclose(init_pos.double().cpu(), expected):
                del state_dict[prefix + "init_pos"]
            else:
                error_msgs.append(f"{prefix}init_pos: expected the fixed sub-pixel grid {expected.flatten().tolist()}")
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def offsets(self, hr_x: Tensor, lr_x: Tensor) -> Tensor:
        """Displacements (B, 2 (x, y), groups, Ho, Wo) in low-resolution pixel units for an hr_x-sized output."""
        out_h, out_w = hr_x.shape[-2:]
        src_h, src_w = (out_h + 1) // 2, (out_w + 1) // 2  # integer arithmetic stays symbolic when traced
        hr_x, lr_x = self.norm_hr(hr_x), self.norm_lr(lr_x)
        hr_sim, lr_sim = local_similarity(hr_x, self.window, 2), local_similarity(lr_x, self.window, 2)
        if self.direction_feat == "sim":  # offsets from the similarities, direct scales from the features
            hr_scale, lr_scale = hr_x, lr_x
        else:
            hr_sim = hr_scale = torch.cat([hr_x, hr_sim], dim=1)
            lr_sim = lr_scale = torch.cat([lr_x, lr_sim], dim=1)

        def unshuffle(t: Tensor) -> Tensor:
            return pixel_shuffle(_extend(t, 2 * src_h, 2 * src_w)[..., : 2 * src_h, : 2 * src_w], 2, inverse=True)

        def lowres(t: Tensor) -> Tensor:
            return _extend(t, src_h, src_w)[..., :src_h, :src_w]

        offset = lowres(self.offset(lr_sim)) + unshuffle(self.hr_offset(hr_sim))
        gate = torch.sigmoid(lowres(self.direct_scale(lr_scale)) + unshuffle(self.hr_direct_scale(hr_scale)))
        displacement = pixel_shuffle(offset * gate, 2)  # (B, 2 * groups, 2 * src_h, 2 * src_w)
        return displacement[..., :out_h, :out_w].reshape(hr_x.shape[0], 2, self.groups, out_h, out_w)

    def forward(self, hr_x: Tensor, lr_x: Tensor, feature: Tensor) -> Tensor:
        """Resample ``feature`` (B, C', Ho, Wo), at hr_x's size, with offsets from hr_x (B, C, Ho, Wo) and
        lr_x (B, C, h, w).
        """
        batch, channels, out_h, out_w = feature.shape
        if channels % self.groups:
            raise ValueError(f"{channels} feature channels cannot be split into {self.groups} resampling groups")
        # the grid is built and sampled in float32 at least: half-precision coordinates are off by ~0.05 px
        work = compute_dtype(feature.dtype)
        disp = self.offsets(hr_x, lr_x).to(work)
        # sampling position of output pixel (i, j) in hr pixel units: its centre + 2 * displacement
        ys = torch.arange(out_h, device=feature.device, dtype=work) + 0.5
        xs = torch.arange(out_w, device=feature.device, dtype=work) + 0.5
        gx = (xs + 2 * disp[:, 0]) * (2 / out_w) - 1
        gy = (ys[:, None] + 2 * disp[:, 1]) * (2 / out_h) - 1
        grid = torch.stack([gx, gy], dim=-1).reshape(batch * self.groups, out_h, out_w, 2)
        source = feature.reshape(batch * self.groups, channels // self.groups, out_h, out_w).to(work)
        sampled = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return sampled.reshape(batch, channels, out_h, out_w).to(feature.dtype)
