"""UniConvNet (Wang & Xi, ICCV 2025, arXiv:2508.09000): the ConvNet of the MRFA paper, scales A to XL.

Four stages of blocks at strides 4, 8, 16, 32. A block adds, each with its own layer scale: MRFA (the paper's
receptive-field aggregator, :class:`~freqdyn.layers.MRFA`), then on channels-last features DCNv3
(:class:`~freqdyn.layers.DCNv3`) after a LayerNorm, then an MLP after a LayerNorm. The stem is two stride-2 3x3
convs with LayerNorms; each later stage starts with a LayerNorm and a stride-2 3x3 conv. The classifier is a
LayerNorm of the global average pool and a linear head.

Public as :mod:`freqdyn.models`. State dicts of the authors' code (``ai-paperwithcode/UniConvNet``, ``models_A-P2``
and ``models_N0-XL``) load with ``strict=True`` and compute their function; nothing is downloaded (load released
weights yourself).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn as nn
from torch import Tensor

from .._common.checks import check_int, check_ints, check_real
from .._common.device_dtype import factory_kwargs
from .dcnv3 import DCNv3
from .drop_path import DropPath
from .layer_norm2d import LayerNorm2d
from .mrfa import MRFA

# scale -> (depths, dims, channels per DCNv3 group): the authors' models_A-P2 (8) and models_N0-XL (16) files
SCALES: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    "a": ((2, 3, 9, 2), (24, 48, 96, 192), 8),
    "p0": ((2, 2, 7, 2), (32, 64, 128, 256), 8),
    "p1": ((2, 3, 6, 3), (32, 64, 128, 256), 8),
    "p2": ((3, 3, 11, 3), (32, 64, 128, 256), 8),
    "n0": ((2, 2, 7, 2), (48, 96, 192, 384), 16),
    "n1": ((2, 2, 8, 3), (48, 96, 192, 384), 16),
    "n2": ((3, 3, 11, 3), (48, 96, 192, 384), 16),
    "n3": ((3, 3, 19, 3), (48, 96, 192, 384), 16),
    "t": ((3, 3, 15, 3), (64, 128, 256, 512), 16),
    "s": ((3, 3, 17, 3), (80, 160, 320, 640), 16),
    "b": ((4, 4, 13, 4), (112, 224, 448, 896), 16),
    "l": ((3, 3, 18, 3), (160, 320, 640, 1280), 16),
    "xl": ((3, 3, 22, 3), (160, 320, 640, 1280), 16),
}


class MLP(nn.Module):
    """(..., C) -> (..., C): fc1 (C -> hidden), GELU, dropout, fc2, dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, **kw) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden, **kw), nn.GELU(), nn.Linear(hidden, dim, **kw)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class UniConvNetStageBlock(nn.Module):
    """x (B, C, H, W) -> (B, C, H, W), the authors' ``Block``:
    x + layer_scale * MRFA(x); then, channels-last, x + gamma1 * DCNv3(LN(x)) and x + gamma2 * MLP(LN(x)).
    """

    def __init__(
        self,
        dim: int,
        group_channels: int = 8,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init: float = 1e-6,
        base_grid: str = "official",
        **kw,
    ) -> None:
        super().__init__()
        if dim % group_channels:
            raise ValueError(f"dim ({dim}) must be divisible by group_channels ({group_channels})")
        self.attn = MRFA(dim, **kw)
        self.mlp = MLP(dim, int(dim * mlp_ratio), drop, **kw)
        self.gamma1 = nn.Parameter(torch.full((dim,), layer_scale_init, **kw))
        self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale_init, **kw))
        self.layer_scale = nn.Parameter(torch.full((dim,), layer_scale_init, **kw))
        self.drop_path = DropPath(drop_path)
        self.norm1 = nn.Sequential(nn.LayerNorm(dim, eps=1e-6, **kw))
        self.norm2 = nn.Sequential(nn.LayerNorm(dim, eps=1e-6, **kw))
        self.dcn = DCNv3(dim, 3, pad=1, group=dim // group_channels, base_grid=base_grid, **kw)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.layer_scale[:, None, None] * self.attn(x))
        x = x.permute(0, 2, 3, 1)
        x = x + self.drop_path(self.gamma1 * self.dcn(self.norm1(x)))
        x = x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)


class UniConvNet(nn.Module):
    """UniConvNet: four stages of MRFA, DCNv3 and MLP blocks; a classifier, or a backbone with ``out_indices``.

    Args:
        depths, dims: blocks and channels of the four stages (:data:`SCALES` holds the authors' scales).
        in_chans, num_classes: input channels; classes (0: no head, ``forward`` returns the pooled features).
        group_channels: channels per DCNv3 group (the authors': 8 for A-P2, 16 for N0-XL).
        drop_path_rate: stochastic depth, rising linearly over the blocks to this rate.
        layer_scale_init_value, head_init_scale, drop: the authors' options.
        base_grid: DCNv3's regular sampling points, ``'official'`` (float32, as the authors' code) or ``'exact'``.
        out_indices: stages whose outputs ``forward`` returns, as a tuple (None: classify).

    Shape:
        - Input: (B, in_chans, H, W).
        - Output: logits (B, num_classes), or with ``out_indices`` the stage outputs
            (B, dims[i], H / 2^(i+2), W / 2^(i+2)) for i in ``out_indices``.

    Differs from the authors' UniConvNet (docs/uniconvnet.md):
        - DCNv3 runs on ``grid_sample`` in PyTorch (theirs is a compiled CUDA op), so the models run anywhere;
        - ``out_indices`` makes it a backbone; ``base_grid='exact'`` builds DCNv3's grid in the model's dtype.

    Examples:
        >>> model = UniConvNet(depths=(1, 1, 1, 1), dims=(16, 32, 48, 64), num_classes=10)
        >>> model(torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 10])
        >>> backbone = UniConvNet((1, 1, 1, 1), (16, 32, 48, 64), out_indices=(0, 1, 2, 3))
        >>> [f.shape[1:] for f in backbone(torch.randn(1, 3, 64, 64))]
        [torch.Size([16, 16, 16]), torch.Size([32, 8, 8]), torch.Size([48, 4, 4]), torch.Size([64, 2, 2])]
    """

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        in_chans: int = 3,
        num_classes: int = 1000,
        group_channels: int = 8,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        head_init_scale: float = 1.0,
        drop: float = 0.0,
        base_grid: str = "official",
        out_indices: Sequence[int] | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = factory_kwargs(device, dtype)
        depths, dims = check_ints(depths, "depths"), check_ints(dims, "dims")
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError(f"depths and dims must have 4 entries, got {depths} and {dims}")
        num_classes = check_int(num_classes, "num_classes", 0)
        self.dims, self.num_classes = tuple(dims), num_classes
        self.num_features = self.head_hidden_size = dims[-1]  # timm's names for the pooled width
        self.out_indices = None if out_indices is None else tuple(check_ints(out_indices, "out_indices", 0))
        if self.out_indices is not None and not all(i < 4 for i in self.out_indices):
            raise ValueError(f"out_indices must be stage indices 0..3, got {out_indices}")
        stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0] // 2, 3, stride=2, padding=1, **kw),
            LayerNorm2d(dims[0] // 2, eps=1e-6, **kw),
            nn.GELU(),
            nn.Conv2d(dims[0] // 2, dims[0], 3, stride=2, padding=1, **kw),
            LayerNorm2d(dims[0], eps=1e-6, **kw),
            nn.Dropout(drop),
        )
        self.downsample_layers = nn.ModuleList([stem])
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm2d(dims[i], eps=1e-6, **kw), nn.Conv2d(dims[i], dims[i + 1], 3, stride=2, padding=1, **kw)
                )
            )
        rates = torch.linspace(0, check_real(drop_path_rate, "drop_path_rate", 0.0), sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.stages.append(
                nn.Sequential(
                    *(
                        UniConvNetStageBlock(
                            dims[i],
                            group_channels,
                            drop=drop,
                            drop_path=rates[start + j],
                            layer_scale_init=layer_scale_init_value,
                            base_grid=base_grid,
                            **kw,
                        )
                        for j in range(depth)
                    )
                )
            )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6, **kw)
        self.head: nn.Module = nn.Linear(dims[-1], num_classes, **kw) if num_classes else nn.Identity()
        self.feature_info = [dict(num_chs=dims[i], reduction=2 ** (i + 2), module=f"stages.{i}") for i in range(4)]
        self.reset_parameters(head_init_scale)

    def reset_parameters(self, head_init_scale: float = 1.0) -> None:
        """The authors' init: conv and linear weights truncated-normal (std 0.02), biases 0, DCNv3's own init,
        the head scaled by ``head_init_scale``.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, DCNv3):
                module.reset_parameters()
        if isinstance(self.head, nn.Linear):
            with torch.no_grad():
                self.head.weight.mul_(head_init_scale)
                self.head.bias.mul_(head_init_scale)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's feature API: the outputs of stages ``indices`` (an int n: the last n), NCHW; with
        ``intermediates_only=False`` also the final features (B, dims[-1], H / 32, W / 32). ``norm`` is not
        supported (the final norm acts on pooled features).
        """
        if output_fmt != "NCHW" or norm:
            raise ValueError("UniConvNet.forward_intermediates supports output_fmt='NCHW' and norm=False only")
        wanted = (
            list(range(4 - indices, 4)) if isinstance(indices, int) else list(range(4) if indices is None else indices)
        )
        if not all(0 <= i < 4 for i in wanted):
            raise ValueError(f"indices must be stage indices 0..3, got {indices}")
        features = []
        last = max(wanted) if stop_early or intermediates_only else 3
        for i in range(last + 1):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in wanted:
                features.append(x)
        return features if intermediates_only else (x, features)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, in_chans, H, W) -> (B, dims[-1]): LayerNorm of the global average pool of the last stage."""
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
        return self.norm(x.mean((-2, -1)))

    def get_classifier(self) -> nn.Module:
        """timm's classifier API: the head (``nn.Identity`` when ``num_classes`` is 0)."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """timm's classifier API: a new head of ``num_classes`` (0: none, ``forward`` returns the pooled features
        (B, dims[-1])), initialised as the authors' head.
        """
        self.num_classes = check_int(num_classes, "num_classes", 0)
        weight = self.norm.weight
        if not self.num_classes:
            self.head = nn.Identity()
            return
        self.head = nn.Linear(self.num_features, self.num_classes, device=weight.device, dtype=weight.dtype)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        if self.out_indices is not None:
            return tuple(cast(list[Tensor], self.forward_intermediates(x, self.out_indices, intermediates_only=True)))
        return self.forward_head(self.forward_features(x))


def scale_args(scale: str, what: str = "scale") -> dict[str, Any]:
    """UniConvNet's ``depths``, ``dims`` and ``group_channels`` at the authors' ``scale`` (:data:`SCALES`); ``what``
    names the argument in the error for an unknown scale.
    """
    key = scale.lower()
    if key not in SCALES:
        raise ValueError(f"{what} must be one of {', '.join(SCALES)}, got {scale!r}")
    depths, dims, group_channels = SCALES[key]
    return {"depths": depths, "dims": dims, "group_channels": group_channels}


def uniconvnet(scale: str, **kwargs) -> UniConvNet:
    """UniConvNet at the authors' ``scale`` (a, p0, p1, p2, n0, n1, n2, n3, t, s, b, l, xl), randomly initialised;
    ``kwargs`` go to :class:`UniConvNet` (and may override ``group_channels``).
    """
    return UniConvNet(**{**scale_args(scale), **kwargs})
