"""Model surgery: replace eligible ``nn.Conv2d`` (or ``nn.Linear``) layers of any model by a freqdyn layer,
keeping weights.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .layers.catalog import is_dynamic
from .layers.kernel_warehouse import to_kernel_warehouse
from .targets import TARGETS

logger = logging.getLogger(__name__)

Selector = str | Callable[[str, nn.Module], bool] | None
KERNEL_WAREHOUSE = "kw"  # a network-level target: its layers share warehouses (to_kernel_warehouse)


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters of ``model`` (shared ones once)."""
    return sum(p.numel() for p in model.parameters())


@dataclass
class ConversionReport:
    """What :func:`convert` did: the (possibly new) root module, replaced / skipped names, parameter counts."""

    model: nn.Module
    replaced: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0

    @property
    def param_delta(self) -> int:
        return self.params_after - self.params_before

    def __str__(self) -> str:
        return (
            f"replaced {len(self.replaced)} layer(s), skipped {len(self.skipped)}; params "
            f"{self.params_before:,} -> {self.params_after:,} ({self.param_delta:+,})"
        )


def _matches(selector: Selector, name: str, module: nn.Module) -> bool:
    if isinstance(selector, str):
        return re.search(selector, name) is not None
    return bool(selector(name, module))  # type: ignore[misc]


def _unselected(include: Selector, exclude: Selector, name: str, module: nn.Module) -> str | None:
    """Why ``include`` / ``exclude`` leave the layer ``name`` out (``"not included"``, ``"excluded"``), or None."""
    if include is not None and not _matches(include, name, module):
        return "not included"
    if exclude is not None and _matches(exclude, name, module):
        return "excluded"
    return None


_STANDARDISED = ("StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "ScaledStdConv2dSame")  # timm's


def _standardised_weight(conv: nn.Conv2d) -> Tensor:
    """The kernel a timm (Scaled)StdConv2d convolves with: each output channel's weights standardised (biased
    variance, its ``eps``), times ``gain * scale`` for the scaled variant.
    """
    scale = getattr(conv, "gain", None)
    if scale is not None:
        scale = (scale * getattr(conv, "scale", 1.0)).reshape(-1)
    flat = conv.weight.reshape(1, conv.out_channels, -1)
    return F.batch_norm(
        flat, None, None, weight=scale, training=True, momentum=0.0, eps=getattr(conv, "eps", 1e-6)
    ).reshape_as(conv.weight)


def _static_equivalent(module: nn.Module, bake_standardization: bool = False) -> nn.Conv2d | None:
    """An ``nn.Conv2d`` computing what a timm Conv2d subclass computes, where one exists.

    timm's ``Conv2dSame`` pads TF-style per input size: at stride 1 that padding is d * (k - 1) split with the
    extra pixel last, for every size, which is ``padding='same'``; strided, it depends on the size (none). It
    shares the module's parameters. With ``bake_standardization``, a ``StdConv2d`` / ``ScaledStdConv2d`` (and their
    ``Same`` variants, under the same padding rule) becomes a conv holding its current standardised kernel (a new
    parameter): the same function now, but training no longer re-standardises it.
    """
    name = type(module).__name__
    if not type(module).__module__.startswith("timm.") or name not in ("Conv2dSame", *_STANDARDISED):
        return None
    if name in _STANDARDISED and not bake_standardization:
        return None
    conv = cast(nn.Conv2d, module)
    dynamic_same = getattr(conv, "same_pad", name == "Conv2dSame")  # padding computed per input size
    if (dynamic_same and conv.stride != (1, 1)) or conv.padding_mode != "zeros":
        return None
    pair = tuple[int, int]
    padding = "same" if dynamic_same else cast(pair, conv.padding)
    plain = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        cast(pair, conv.kernel_size),
        cast(pair, conv.stride),
        padding,
        cast(pair, conv.dilation),
        conv.groups,
        conv.bias is not None,
        device="meta",
    )
    if name in _STANDARDISED:
        with torch.no_grad():
            plain.weight = nn.Parameter(_standardised_weight(conv).clone(), conv.weight.requires_grad)
    else:
        plain.weight = conv.weight
    plain.bias = conv.bias
    return plain.train(conv.training)


def _carry_state(old: nn.Conv2d | nn.Linear, new: nn.Module) -> None:
    """Give ``new`` what model surgery must keep of ``old``: frozen parameters and module hooks.

    Device, dtype and training mode come with ``from_conv``. The new layer's parameters follow ``old.weight``'s
    ``requires_grad`` (a frozen conv stays frozen, attention included), its bias ``old.bias``'s; forward and
    backward hooks are carried over.
    """
    bias = getattr(new, "bias", None)
    for p in new.parameters():
        p.requires_grad_(old.bias.requires_grad if p is bias and old.bias is not None else old.weight.requires_grad)
    for name in (
        "_forward_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_hooks_always_called",
        "_forward_pre_hooks",
        "_forward_pre_hooks_with_kwargs",
        "_backward_hooks",
        "_backward_pre_hooks",
    ):
        getattr(new, name).update(getattr(old, name))
    new._is_full_backward_hook = old._is_full_backward_hook


def convert(
    model: nn.Module,
    to: str = "fdconv",
    *,
    include: Selector = None,
    exclude: Selector = None,
    bake_standardization: bool = False,
    **kwargs,
) -> ConversionReport:
    """Replace every ``nn.Conv2d`` (``nn.Linear`` for ``to="fdlinear"``) selected by ``include`` / ``exclude`` in place.

    ``include`` / ``exclude`` are regular expressions searched in the module's qualified name, or
    predicates ``(name, module) -> bool``. ``kwargs`` go to the target's ``from_conv`` / ``from_linear``.
    Layers the target would keep as plain convolutions (e.g. FDConv's channel / kernel-size gating) stay
    ``nn.Conv2d``. Subclasses (timm's ``StdConv2d`` and ``Conv2dSame``, mmcv's ``Conv2dAdaptivePadding``)
    change what the convolution computes (weight standardisation, dynamic 'same' padding), so they are
    listed in ``report.skipped`` with that reason, not converted; timm's ``Conv2dSame`` at stride 1, whose padding
    is then static (``padding='same'``), converts. ``bake_standardization=True`` opts timm's ``StdConv2d`` /
    ``ScaledStdConv2d`` (BiT, NFNet) in: the dynamic layer starts from the standardised kernel, so the converted
    model computes the same function, but its kernels are no longer re-standardised in training (weight
    standardisation becomes an initialisation, not a constraint). A replaced layer keeps the source's
    device, dtype, training mode, ``requires_grad`` and hooks.

    Args:
        model: the model to change in place (a bare ``nn.Conv2d`` / ``nn.Linear`` is replaced in the report).
        to: a target of :data:`freqdyn.targets.TARGETS`: ``'fdconv'``, ``'dyconv'``, ``'condconv'``, ``'odconv'``,
            ``'fdlinear'``, ``'fdlinear_qwen'``; or ``'kw'``, KernelWarehouse, which converts a whole network
            (:func:`_convert_kernel_warehouse`).
        include: which layers to convert (above); all by default.
        exclude: which layers to leave (above), applied after ``include``.
        bake_standardization: convert weight-standardised convs too (above).
        **kwargs: options of the target layer.

    Returns:
        A :class:`ConversionReport`: the model, the replaced and skipped layers (with reasons), parameters
        before and after.

    Examples:
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3), torch.nn.Conv2d(32, 32, 3))
        >>> report = convert(model, "fdconv", kernel_num=8)
        >>> report.replaced, report.skipped
        (['1'], {'0': "kept as a plain convolution by the target's gating"})
    """
    if to == KERNEL_WAREHOUSE:
        return _convert_kernel_warehouse(model, include, exclude, **kwargs)
    if to not in TARGETS:
        raise ValueError(f"unknown conversion target {to!r}; choose from {sorted([*TARGETS, KERNEL_WAREHOUSE])}")
    if type(model).__module__.startswith("ultralytics."):  # its guard: YOLO(...).train() would drop the conversion
        importlib.import_module("freqdyn.integrations.ultralytics").register()
    factory, source = TARGETS[to].convert, TARGETS[to].source
    report = ConversionReport(model=model, params_before=count_parameters(model))
    built: dict[int, nn.Module] = {}
    for name, module in list(model.named_modules(remove_duplicate=False)):
        static = _static_equivalent(module, bake_standardization) if source is nn.Conv2d else None
        if type(module) is not source and static is None:
            if isinstance(module, source):
                opt_in = (
                    " (convert(..., bake_standardization=True) converts it with its standardised kernel)"
                    if type(module).__name__ in _STANDARDISED and not bake_standardization
                    else ""
                )
                report.skipped[name] = (
                    f"{type(module).__name__} subclasses {source.__name__} and changes its "
                    f"computation (e.g. weight standardisation, dynamic 'same' padding){opt_in}"
                )
            continue
        unselected = _unselected(include, exclude, name, module)
        if unselected:
            report.skipped[name] = unselected
            continue
        if id(module) not in built:
            built[id(module)] = factory(module if static is None else static, **kwargs)
            _carry_state(cast(nn.Conv2d | nn.Linear, module), built[id(module)])
        new = built[id(module)]
        if not is_dynamic(new):
            report.skipped[name] = "kept as a plain convolution by the target's gating"
            continue
        if name == "":
            report.model = new
        else:
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, new)
        report.replaced.append(name)
    report.params_after = count_parameters(report.model)
    logger.info("convert(to=%r): %s", to, report)
    return report


def _convert_kernel_warehouse(model: nn.Module, include: Selector, exclude: Selector, **kwargs) -> ConversionReport:
    """``convert(model, "kw", ...)``: KernelWarehouse, whose layers share one warehouse of cells per stage.

    The stages are the authors' KW ResNet layout for torchvision and timm ResNets
    (:func:`~freqdyn.layers.kernel_warehouse.resnet_stages`), or ``stages=`` (qualified name -> warehouse name, or a
    function of (name, module)) for any model; ``include`` / ``exclude`` leave staged layers plain. The other
    keywords go to :class:`~freqdyn.layers.kernel_warehouse.WarehouseManager` (``cell_num_ratio=4`` is the paper's
    "KW (4x)"). The model gets a ``warehouse_manager`` submodule, so its state_dict has the authors' names and a
    converted torchvision ResNet loads their checkpoints with ``strict=True``. The shared cells cannot start from
    pretrained plain weights: the KW layers are initialised as the authors' networks are (a warning says so).
    """
    report = ConversionReport(model=model, params_before=count_parameters(model))

    keep = functools.partial(_unselected, include, exclude)
    report.replaced, report.skipped = to_kernel_warehouse(model, kwargs.pop("stages", None), keep, **kwargs)
    report.params_after = count_parameters(model)
    logger.info("convert(to='kw'): %s", report)
    return report
