"""The official gating of FDConv, as a policy: which convolutions become FDConv and which stay ``nn.Conv2d``.

The authors' FDConv stays a plain convolution (``weight``, ``bias``) when ``min(in, out) <= 16`` or a kernel side is
not 1 or 3. Here that rule is not a mode of :class:`FDConv` (which is always dynamic) but these functions, used by
:func:`freqdyn.convert`, checkpoint conversion, the mmengine registry (``dict(type="FDConv", ...)`` builds through
:func:`gated_fdconv`) and the ultralytics rows. A model built through them has the authors' keys, so their
checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn as nn

from .._common.checks import check_int, check_ints
from .._common.conv_args import IntPair, Padding, pair
from .conv import FDConv

USE_FDCONV_IF_C_GT = 16
USE_FDCONV_IF_K_IN = (1, 3)


def uses_fdconv(
    in_channels: int,
    out_channels: int,
    kernel_size: IntPair,
    use_fdconv_if_c_gt: int = USE_FDCONV_IF_C_GT,
    use_fdconv_if_k_in: Sequence[int] = USE_FDCONV_IF_K_IN,
) -> bool:
    """Whether the official gating makes an (in -> out, kernel_size) convolution an FDConv."""
    threshold = check_int(use_fdconv_if_c_gt, "use_fdconv_if_c_gt", 0)
    sizes = check_ints(use_fdconv_if_k_in, "use_fdconv_if_k_in")
    return min(in_channels, out_channels) > threshold and all(k in sizes for k in pair(kernel_size, "kernel_size"))


def gated_fdconv(
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
    use_fdconv_if_c_gt: int = USE_FDCONV_IF_C_GT,
    use_fdconv_if_k_in: Sequence[int] = USE_FDCONV_IF_K_IN,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    **fdconv_kwargs: Any,
) -> FDConv | nn.Conv2d:
    """An :class:`FDConv`, or an ``nn.Conv2d`` with the same arguments where the official gating keeps the layer
    plain: the authors' ``FDConv(...)``.

    Examples:
        >>> type(gated_fdconv(32, 32, 3, padding=1)).__name__, type(gated_fdconv(16, 16, 3, padding=1)).__name__
        ('FDConv', 'Conv2d')
    """
    conv_args = (in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
    if uses_fdconv(in_channels, out_channels, kernel_size, use_fdconv_if_c_gt, use_fdconv_if_k_in):
        return FDConv(*conv_args, padding_mode, device=device, dtype=dtype, **fdconv_kwargs)
    return cast(Any, nn.Conv2d)(*conv_args, padding_mode, device=device, dtype=dtype)  # IntPair: torch types pairs


def gated_from_conv(
    conv: nn.Conv2d,
    *,
    use_fdconv_if_c_gt: int = USE_FDCONV_IF_C_GT,
    use_fdconv_if_k_in: Sequence[int] = USE_FDCONV_IF_K_IN,
    **fdconv_kwargs: Any,
) -> nn.Module:
    """:meth:`FDConv.from_conv` where the official gating makes ``conv`` an FDConv; ``conv`` itself elsewhere.

    Examples:
        >>> conv = torch.nn.Conv2d(8, 8, 3)
        >>> gated_from_conv(conv) is conv
        True
    """
    if uses_fdconv(conv.in_channels, conv.out_channels, conv.kernel_size, use_fdconv_if_c_gt, use_fdconv_if_k_in):
        return FDConv.from_conv(conv, **fdconv_kwargs)
    return conv
