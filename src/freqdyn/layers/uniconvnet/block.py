"""A UniConvNet-style residual block around MRFA (UniConvNet, ICCV 2025), for use in backbones."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from .._common.checks import check_int, check_real
from .._common.device_dtype import factory_kwargs
from .._common.trace_only import TraceOnly
from .drop_path import DropPath
from .layer_norm2d import LayerNorm2d
from .mrfa import MRFA


class UniConvNetBlock(TraceOnly, nn.Module):
    """x (B, dim, H, W) -> (B, dim, H, W): x + drop_path(gamma1 * MRFA(x)), then x + drop_path(gamma2 * MLP(LN(x))).

    MRFA normalises its input itself; the MLP is 1x1 conv (dim -> mlp_ratio * dim), GELU, 1x1 conv back.
    ``layer_scale_init`` <= 0 disables layer scale.

    Args:
        dim: channels, divisible by 4.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        drop_path: stochastic depth rate of both branches.
        layer_scale_init: initial value of gamma1 and gamma2.
        kernel_sizes: MRFA's depthwise kernels.
        device, dtype: factory arguments.

    Shape:
        - Input: (B, dim, H, W).
        - Output: (B, dim, H, W).

    Differs from the authors' (docs/uniconvnet.md): in nothing it computes (their UniConvNet-A checkpoint computes
    their function: ``tests/golden/uniconvnet_a.pt``).

    Examples:
        >>> UniConvNetBlock(32, drop_path=0.1)(torch.randn(2, 32, 14, 14)).shape
        torch.Size([2, 32, 14, 14])
    """

    def __init__(
        self,
        dim: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        layer_scale_init: float = 1e-6,
        kernel_sizes: tuple[int, int, int] = (7, 9, 11),
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = factory_kwargs(device, dtype)
        dim, mlp_ratio = check_int(dim, "dim"), check_real(mlp_ratio, "mlp_ratio", 0.0, above=True)
        layer_scale_init = check_real(layer_scale_init, "layer_scale_init")
        if not check_real(drop_path, "drop_path", 0.0) < 1:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path!r}")
        hidden = int(dim * mlp_ratio)
        if hidden < 1:
            raise ValueError(f"mlp_ratio={mlp_ratio} leaves no hidden channels for dim={dim}")
        self.mrfa = MRFA(dim, kernel_sizes, **kw)
        self.norm = LayerNorm2d(dim, eps=1e-6, **kw)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1, **kw), nn.GELU(), nn.Conv2d(hidden, dim, 1, **kw))
        use_scale = layer_scale_init > 0
        self.layer_scale_init = layer_scale_init
        self.gamma1 = nn.Parameter(torch.full((dim,), layer_scale_init, **kw)) if use_scale else None
        self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale_init, **kw)) if use_scale else None
        self.drop_path = DropPath(drop_path)

    def reset_parameters(self) -> None:
        """MRFA, the norm and the MLP to their default initialisation; layer scales to ``layer_scale_init``."""
        self.mrfa.reset_parameters()
        self.norm.reset_parameters()
        for module in self.mlp:
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()
        for gamma in (self.gamma1, self.gamma2):
            if gamma is not None:
                nn.init.constant_(gamma, self.layer_scale_init)

    def _scale(self, x: Tensor, gamma: Tensor | None) -> Tensor:
        return x if gamma is None else x * gamma[:, None, None]

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self._scale(self.mrfa(x), self.gamma1))
        return x + self.drop_path(self._scale(self.mlp(self.norm(x)), self.gamma2))
