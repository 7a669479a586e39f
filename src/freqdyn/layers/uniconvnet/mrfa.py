"""MRFA: UniConvNet's multi-stage receptive field aggregator (UniConvNet, ICCV 2025).

The channels are split into four quarters. Stage i (kernels 7, 9, 11) turns the running context of
width (i + 1) * C / 4 into a large-kernel context, gates it ("amplifier"), and injects it as a residual
into the next quarter after that quarter's local 1x1 + 3x3 processing ("discriminator"); the running
width grows C/4 -> C/2 -> 3C/4 -> C, so the receptive field grows 7 -> 15 -> 25 pixels while every
stage keeps the pixels near the centre the most influential.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn as nn
from torch import Tensor

from .._common.checks import check_feature_map, check_int, check_ints
from .._common.device_dtype import factory_kwargs
from .._common.trace_only import TraceOnly
from .layer_norm2d import LayerNorm2d


class AggregationStage(nn.Module):
    """One MRFA stage: context (B, width, H, W) and the next quarter (B, C/4, H, W) -> (B, width + C/4, H, W)."""

    def __init__(self, width: int, quarter: int, kernel_size: int, normalise: bool, **kw) -> None:
        super().__init__()
        self.norm = LayerNorm2d(width, eps=1e-6, **kw) if normalise else nn.Identity()
        self.context = nn.Sequential(
            nn.Conv2d(width, width, 1, **kw),
            nn.GELU(),
            nn.Conv2d(width, width, kernel_size, padding=kernel_size // 2, groups=width, **kw),
        )
        self.gate = nn.Conv2d(width, width, 1, **kw)
        self.proj = nn.Conv2d(width, width, 1, **kw)
        self.prep = nn.Conv2d(quarter, quarter, 1, **kw)
        self.refine = nn.Conv2d(quarter, quarter, 3, padding=1, groups=quarter, **kw)
        self.inject = nn.Conv2d(width, quarter, 1, **kw) if width != quarter else nn.Identity()

    def forward(self, context: Tensor, quarter: Tensor) -> Tensor:
        context = self.norm(context)
        ctx = self.context(context)
        gated = self.proj(ctx * self.gate(context))
        local = self.refine(self.prep(quarter)) + self.inject(ctx)
        return torch.cat((local, gated), dim=1)


def _foreign_names() -> dict[str, str]:
    """State-dict prefixes of other MRFA implementations -> ours (stage i = 1, 2, 3 is ``stages.{i-1}``)."""
    names: dict[str, str] = {}
    for i in (1, 2, 3):
        stage = f"stages.{i - 1}."
        norm = "norm." if i == 1 else stage + "norm."
        ours = {
            "norm": norm,
            "context": stage + "context.",
            "gate": stage + "gate.",
            "proj": stage + "proj.",
            "prep": stage + "prep.",
            "refine": stage + "refine.",
            "inject": stage + "inject.",
        }
        seed = {
            f"ln_stage{i}.": "norm",
            f"ctx_branch_s{i}.": "context",
            f"gate_branch_s{i}.": "gate",
            f"post_gate_s{i}.": "proj",
            f"prep_quarter{i + 1}.": "prep",
            f"refine3x3_s{i}.": "refine",
        }
        repo = {
            f"norm{i}.": "norm",
            f"a{i}.": "context",
            f"v{i}.": "gate",
            f"v{i}1.": "proj",
            f"v{i}2.": "prep",
            f"conv3_{i}.": "refine",
        }
        if i > 1:  # stage 1's context already has the quarter's width
            seed[f"proj_ctx_to_q{i + 1}."] = repo[f"proj{i}."] = "inject"
        for table in (seed, repo):
            names.update({foreign: ours[role] for foreign, role in table.items()})
    return names


_FOREIGN_NAMES = _foreign_names()
_FOREIGN_LEAVES = {"gamma": "weight", "beta": "bias"}  # the blog copy's LayerNorm


class MRFA(TraceOnly, nn.Module):
    """Multi-stage receptive field aggregator: x (B, dim, H, W) -> (B, dim, H, W); ``dim`` divisible by 4.

    LayerNorm over the channels, split into four quarters, then three :class:`AggregationStage` with
    depthwise kernels ``kernel_sizes`` (7, 9, 11); stages 2 and 3 normalise their running context first.

    State dicts of the UniConvNet repository's ``ConvMod`` (``norm1..3``, ``a{i}``, ``v{i}``, ``v{i}1``,
    ``v{i}2``, ``conv3_{i}``, ``proj{i}``) and of the widely copied blog version (``ln_stage{i}.gamma/beta``,
    ``ctx_branch_s{i}``, ``gate_branch_s{i}``, ``post_gate_s{i}``, ``prep_quarter{i+1}``, ``refine3x3_s{i}``,
    ``proj_ctx_to_q{i+1}``) load with ``strict=True``: the computation is the same.

    Args:
        dim: channels, divisible by 4.
        kernel_sizes: the depthwise kernels of the three stages.
        device, dtype: factory arguments.

    Shape:
        - Input: (B, dim, H, W).
        - Output: (B, dim, H, W).

    Differs from the authors' (docs/uniconvnet.md): in nothing it computes; the state dicts of their ``ConvMod`` and
    of the blog copy load with ``strict=True``.

    Examples:
        >>> MRFA(32)(torch.randn(1, 32, 20, 20)).shape
        torch.Size([1, 32, 20, 20])
    """

    def __init__(
        self,
        dim: int,
        kernel_sizes: tuple[int, int, int] = (7, 9, 11),
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if check_int(dim, "dim", 0) < 4 or dim % 4:
            raise ValueError(
                f"MRFA splits the channels into 4 quarters: dim must be a positive multiple of 4, got {dim}"
            )
        kernel_sizes = cast(tuple[int, int, int], check_ints(kernel_sizes, "kernel_sizes"))
        if len(kernel_sizes) != 3 or any(k % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be three odd positive ints, got {kernel_sizes}")
        kw = factory_kwargs(device, dtype)
        self.dim, self.kernel_sizes = dim, tuple(kernel_sizes)
        quarter = dim // 4
        self.norm = LayerNorm2d(dim, eps=1e-6, **kw)
        self.stages = nn.ModuleList(
            AggregationStage((i + 1) * quarter, quarter, k, normalise=i > 0, **kw) for i, k in enumerate(kernel_sizes)
        )

    def reset_parameters(self) -> None:
        """Every conv and norm to its PyTorch default initialisation (the reference code sets no other)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.LayerNorm):
                module.reset_parameters()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            local = key[len(prefix) :]
            head, dot, rest = local.partition(".")
            if head + dot in _FOREIGN_NAMES:
                leaf = _FOREIGN_LEAVES.get(rest, rest) if head.startswith("ln_stage") else rest
                state_dict[prefix + _FOREIGN_NAMES[head + dot] + leaf] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Outputs of the three stages: (B, dim/2, H, W), (B, 3 dim/4, H, W), (B, dim, H, W)."""
        check_feature_map(x, self.dim, type(self).__name__)
        quarters = torch.chunk(self.norm(x), 4, dim=1)
        context, outputs = quarters[0], []
        for stage, quarter in zip(self.stages, quarters[1:], strict=True):
            context = stage(context, quarter)
            outputs.append(context)
        return outputs

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_stages(x)[-1]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_sizes={self.kernel_sizes}"
