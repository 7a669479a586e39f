"""KernelWarehouse convolutions (1-D, 2-D, 3-D) and the linear layer: each kernel is assembled per sample from the
cells of a warehouse shared with the other layers of its stage (:class:`~.manager.WarehouseManager`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._common.batched_conv import batched_conv2d
from .._common.checks import check_int
from .._common.device_dtype import as_dtype, factory_kwargs
from .._common.empty_batch import tie_to_parameters
from .._common.pooling import mean_pool
from .._common.program_mode import compute_dtype
from .attention import WarehouseAttention

if TYPE_CHECKING:
    from .manager import WarehouseManager

_CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _tuple(value: int | Sequence[int], dimension: int, name: str, minimum: int) -> tuple[int, ...]:
    """An int or a sequence of ``dimension`` ints (each >= ``minimum``) as a tuple, else an error naming ``name``."""
    values = [value] * dimension if isinstance(value, int) else list(value)
    if len(values) == 1:
        values = values * dimension
    if len(values) != dimension:
        raise ValueError(f"{name} must be an int or {dimension} ints, got {value!r}")
    return tuple(check_int(v, name, minimum) for v in values)


class KWConvNd(nn.Module):
    """A convolution whose kernel (O, I / groups, *k) is a per-sample mixture of warehouse cells.

    Built by :meth:`WarehouseManager.reserve`; usable after the manager's ``store()`` and ``allocate(network)``.
    The kernel is cut into cells (cell_out, cell_in, *cell_k); for each of its ``mixtures`` cell positions the
    :class:`~.attention.WarehouseAttention` weighs all ``cells`` cells of the warehouse. Input (B, I, *spatial) ->
    (B, O, *spatial'), as the ``nn.ConvNd`` of the same arguments; zero padding only; ``bias`` starts at 0 (the
    authors' init). State-dict keys are the authors': ``attention.{fc1, norm1, fc2[, fc3, basis_bias]}``,
    ``bias``, plus ``attention.temperature`` (optional when loading).
    """

    dimension = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = False,
        *,
        warehouse_id: int,
        manager: WarehouseManager,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        d = self.dimension
        self.in_channels, self.out_channels = (
            check_int(in_channels, "in_channels"),
            check_int(out_channels, "out_channels"),
        )
        self.groups = check_int(groups, "groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        self.kernel_size = _tuple(kernel_size, d, "kernel_size", 1)
        self.stride = _tuple(stride, d, "stride", 1)
        self.padding = _tuple(padding, d, "padding", 0)
        self.dilation = _tuple(dilation, d, "dilation", 1)
        self.warehouse_id = warehouse_id
        self._manager = [manager]  # a reference, not a submodule: the warehouses live in the network's manager
        self.bias = nn.Parameter(torch.zeros(self.out_channels, **factory_kwargs(device, dtype))) if bias else None
        self.attention: WarehouseAttention | None = None
        self.cell_shape: tuple[int, ...] = ()
        self.cell_range, self.cell_num_ratio = (0, 0), 1.0

    @classmethod
    def standalone(
        cls,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> KWConvNd:
        """A layer with a warehouse of its own, held as its ``warehouse_manager`` submodule (its state_dict,
        ``.to()``, copies and ``parameters()`` include the cells): for a single dynamic conv. In a network, layers
        share warehouses: ``freqdyn.convert(model, "kw")``. ``options`` go to the manager.
        """
        from .manager import WarehouseManager

        manager = WarehouseManager(**options)
        layer_type = f"conv{cls.dimension}d"
        layer = manager.reserve(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            warehouse_name="own",
            layer_type=layer_type,
            device=device,
            dtype=dtype,
        )
        assert isinstance(layer, cls)
        manager.store(device=device, dtype=dtype)
        layer.warehouse_manager = manager
        manager.allocate(layer)
        return layer

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """(O, I / groups, *kernel_size): the kernel of the plain convolution this layer stands for."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def is_plain_weight(self, weight: Tensor) -> bool:
        """Always False: a plain kernel cannot become cells that other layers share (KW starts from its own init)."""
        return False

    def cells(self) -> Tensor:
        """The warehouse cells this layer mixes, (M, cell_out, cell_in, *cell_k): shared with its stage's layers."""
        return self.manager.weights[self.warehouse_id]

    @property
    def manager(self) -> WarehouseManager:
        return self._manager[0]

    def init_attention(
        self, cells: Tensor, start_cell: int, reduction: float, cell_num_ratio: float, nonlocal_basis_ratio: float
    ) -> int:
        """Build the attention for a warehouse ``cells`` (M, cell_out, cell_in, *cell_k) from ``start_cell`` on;
        returns the cell after this layer's own (the manager's ``allocate`` calls it).
        """
        self.cell_shape = tuple(cells.shape)
        groups_out = self.out_channels // self.cell_shape[1]
        groups_in = self.in_channels // self.cell_shape[2] // self.groups
        self.groups_spatial = math.prod(k // c for k, c in zip(self.kernel_size, self.cell_shape[3:], strict=True))
        self.groups_out, self.groups_in = groups_out, groups_in
        mixtures = groups_out * groups_in * self.groups_spatial
        self.attention = WarehouseAttention(
            self.in_channels,
            reduction,
            self.cell_shape[0],
            mixtures,
            cell_num_ratio,
            nonlocal_basis_ratio,
            start_cell,
            device=cells.device,
            dtype=cells.dtype,
        )
        self.cell_num_ratio = cell_num_ratio
        end = self.attention.init_temperature(start_cell, cell_num_ratio)
        self.cell_range = (start_cell, end)
        return end

    def reset_parameters(self) -> None:
        """The authors' init of this layer's parts: the attention (its one-hot targets rebuilt), the bias at 0, and
        for a :meth:`standalone` layer its warehouse; shared warehouses are their manager's
        (:meth:`WarehouseManager.reset_warehouses`).
        """
        if self.attention is not None:
            self.attention.reset_parameters()
            self.attention.init_temperature(self.cell_range[0], self.cell_num_ratio)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        if getattr(self, "warehouse_manager", None) is self.manager:
            self.manager.reset_warehouses(self)

    def kernels(self, att: Tensor) -> Tensor:
        """Per-sample kernels (B, O, I / groups, *k) from the cell weights ``att`` (B * mixtures, M)."""
        mixed = att @ as_dtype(self.cells(), att.dtype).view(self.cell_shape[0], -1)
        d = self.dimension
        mixed = mixed.view(-1, self.groups_spatial, self.groups_out, self.groups_in, *self.cell_shape[1:])
        # (B, spatial, out groups, in groups, cell_out, cell_in, *cell_k) -> (B, O, I / groups, *k)
        order = (0, 2, 4, 3, 5, 1, *range(6, 6 + d))
        return mixed.permute(order).reshape(-1, *self.weight_shape)

    def _check_input(self, x: Tensor) -> None:
        name = type(self).__name__
        if x.dim() != self.dimension + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} expects a (B, {self.in_channels}, {'*' * self.dimension}) input, got {tuple(x.shape)}"
            )
        if self.attention is None:
            raise ValueError(
                f"{name} has no warehouse cells yet: call store() and allocate(network) on its "
                f"WarehouseManager (freqdyn.convert(model, 'kw') does both)"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if not x.shape[0]:
            zeros = x.new_zeros(self.weight_shape)
            out = _CONVS[self.dimension](x, zeros, None, self.stride, self.padding, self.dilation, self.groups)
            return tie_to_parameters(tie_to_parameters(out, self), self.manager)  # the cells too: zero gradients
        assert self.attention is not None
        batch = x.shape[0]
        att = self.attention(mean_pool(x, tuple(range(2, x.dim())), compute_dtype(x.dtype)))
        weight = as_dtype(self.kernels(att), x.dtype)
        bias = None if self.bias is None else as_dtype(self.bias, x.dtype)
        if self.dimension == 2:
            return batched_conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)  # type: ignore[arg-type]
        folded = x.reshape(1, batch * self.in_channels, *x.shape[2:])
        y = _CONVS[self.dimension](
            folded,
            weight.reshape(-1, *weight.shape[2:]),
            None,
            self.stride,
            self.padding,
            self.dilation,
            self.groups * batch,
        )
        y = y.view(batch, self.out_channels, *y.shape[2:])
        return y if bias is None else y + bias.view(-1, *([1] * self.dimension))

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}"
        )
        if self.dilation != (1,) * self.dimension:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + f", bias={self.bias is not None}, warehouse={self.warehouse_id}, cells={self.cell_range}"


class KWConv1d(KWConvNd):
    """KernelWarehouse ``nn.Conv1d``: a convolution whose kernel is a per-sample mixture of shared cells.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv1d``
            (zero padding only; ``bias`` starts at 0, as the authors' init).
        warehouse_id, manager: set by :meth:`WarehouseManager.reserve`, which builds KW layers in a network;
            :meth:`standalone` builds one with a warehouse of its own.

    Shape:
        - Input: (B, I, L).
        - Output: (B, O, L') with ``nn.Conv1d``'s sizes.

    Differs from the authors' KernelWarehouse (docs/kernel_warehouse.md):
        - the one-hot blend term follows the model's dtype (theirs is float32 in a float64 model);
        - a train-mode batch of one normalises the attention with the running statistics (theirs raises);
        - cells that do not tile the layer, or a bad input, raise a ``ValueError`` (theirs assert).

    Examples:
        >>> conv = KWConv1d.standalone(8, 16, 3, padding=1, cell_num_ratio=2)
        >>> conv(torch.randn(2, 8, 10)).shape
        torch.Size([2, 16, 10])
    """

    dimension = 1


class KWConv2d(KWConvNd):
    """KernelWarehouse ``nn.Conv2d``: a convolution whose kernel is a per-sample mixture of shared cells.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv2d``
            (zero padding only; ``bias`` starts at 0, as the authors' init).
        warehouse_id, manager: set by :meth:`WarehouseManager.reserve`, which builds KW layers in a network;
            :meth:`standalone` builds one with a warehouse of its own.

    Shape:
        - Input: (B, I, H, W).
        - Output: (B, O, H', W') with ``nn.Conv2d``'s sizes.

    Differs from the authors' KernelWarehouse (docs/kernel_warehouse.md):
        - the one-hot blend term follows the model's dtype (theirs is float32 in a float64 model);
        - a train-mode batch of one normalises the attention with the running statistics (theirs raises);
        - cells that do not tile the layer, or a bad input, raise a ``ValueError`` (theirs assert).

    Examples:
        >>> conv = KWConv2d.standalone(8, 16, 3, padding=1, cell_num_ratio=2)
        >>> conv(torch.randn(2, 8, 9, 9)).shape
        torch.Size([2, 16, 9, 9])
    """

    dimension = 2


class KWConv3d(KWConvNd):
    """KernelWarehouse ``nn.Conv3d``: a convolution whose kernel is a per-sample mixture of shared cells.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv3d``
            (zero padding only; ``bias`` starts at 0, as the authors' init).
        warehouse_id, manager: set by :meth:`WarehouseManager.reserve`, which builds KW layers in a network;
            :meth:`standalone` builds one with a warehouse of its own.

    Shape:
        - Input: (B, I, D, H, W).
        - Output: (B, O, D', H', W') with ``nn.Conv3d``'s sizes.

    Differs from the authors' KernelWarehouse (docs/kernel_warehouse.md):
        - the one-hot blend term follows the model's dtype (theirs is float32 in a float64 model);
        - a train-mode batch of one normalises the attention with the running statistics (theirs raises);
        - cells that do not tile the layer, or a bad input, raise a ``ValueError`` (theirs assert).

    Examples:
        >>> conv = KWConv3d.standalone(8, 16, 3, padding=1, cell_num_ratio=2)
        >>> conv(torch.randn(2, 8, 4, 5, 5)).shape
        torch.Size([2, 16, 4, 5, 5])
    """

    dimension = 3


class KWLinear(nn.Module):
    """KernelWarehouse ``nn.Linear``: a 1x1 :class:`KWConv1d` over the tokens, attentions pooled per sample.

    Args:
        in_features, out_features, bias: as ``nn.Linear`` (``bias`` starts at 0).
        kwargs: the warehouse arguments of :class:`KWConv1d`, set by :meth:`WarehouseManager.reserve` with
            ``layer_type="linear"``.

    Shape:
        - Input: (B, ..., in_features).
        - Output: (B, ..., out_features).

    Differs from the authors' KernelWarehouse (docs/kernel_warehouse.md):
        - an input whose last dim is not ``in_features`` raises a ``ValueError`` (theirs fails in a reshape);
        - the same state_dict keys (``conv.attention...``), the temperature buffer optional when loading.

    Examples:
        >>> from freqdyn import WarehouseManager
        >>> manager = WarehouseManager()
        >>> layer = manager.reserve(16, 32, 1, warehouse_name="fc", layer_type="linear")
        >>> model = torch.nn.ModuleDict({"fc": layer, "warehouse_manager": manager})
        >>> manager.store()
        >>> manager.allocate(model)
        >>> layer(torch.randn(2, 5, 16)).shape
        torch.Size([2, 5, 32])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, **kwargs: Any) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.conv = KWConv1d(in_features, out_features, 1, bias=bias, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"KWLinear expects a (B, ..., {self.in_features}) input, got {tuple(x.shape)}")
        tokens = x.reshape(x.shape[0], -1, self.in_features).transpose(1, 2)
        return self.conv(tokens).transpose(1, 2).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
