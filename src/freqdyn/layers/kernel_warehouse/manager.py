"""The warehouse manager of a KernelWarehouse network: it reserves the KW layers, sizes one warehouse of shared
cells per stage and hands each layer its cells (Li et al., ICML 2024).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn as nn

from .._common.checks import ArgumentTypeError, check_bool, check_positive
from .attention import CELL_RATIO_ADVICE
from .conv import KWConv1d, KWConv2d, KWConv3d, KWConvNd, KWLinear

LAYER_TYPES: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {  # layer_type -> (KW layer, plain layer)
    "conv1d": (KWConv1d, nn.Conv1d),
    "conv2d": (KWConv2d, nn.Conv2d),
    "conv3d": (KWConv3d, nn.Conv3d),
    "linear": (KWLinear, nn.Linear),
}

Ratio = float | Sequence[float]


def _checked(value: Any, name: str, check: Callable[[Any, str], Any]) -> Any:
    """``value`` (one setting, or one per warehouse) with every entry checked by ``check``."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not value:
            raise ValueError(f"{name} must be a value or one per warehouse, got an empty sequence")
        return tuple(check(v, name) for v in value)
    return check(value, name)


def _per_warehouse(value: Any, count: int, name: str) -> list[Any]:
    """The authors' ``parse``: one value for every warehouse, or one per warehouse."""
    values = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise ValueError(f"{name} must be one value or one per warehouse ({count}), got {len(values)}")
    return values


class WarehouseManager(nn.Module):
    """Holds the warehouses (``weights.{i}``, (cells, cell_out, cell_in, *cell_k) each) of a KW network.

    Use: :meth:`reserve` each KW layer (in place of ``nn.ConvNd`` / ``nn.Linear``), then :meth:`store` (sizes and
    creates the warehouses) and :meth:`allocate` (gives each layer its attention and its own cells, initialised as
    the authors do). The manager must be a submodule of the network (``network.warehouse_manager`` in the authors'
    models): its parameters are in the network's state_dict once, as ``warehouse_manager.weights.{i}``.

    Args:
        reduction: hidden width of the attentions, ``max(int(in * reduction), 16)``.
        cell_num_ratio: cells of a warehouse / the cells its layers' kernels divide into (1/4 .. 4: "KW (4x)").
            At least ``max(cell_inplane_ratio, cell_outplane_ratio)`` for the temperature initialisation.
        cell_inplane_ratio, cell_outplane_ratio: a cell's input / output channels over the greatest common divisor
            of its layers' channels.
        sharing_range: name parts that are shared: with ``("layer", "conv")`` the layer reserved as
            ``"stage2_layer3_conv1"`` uses warehouse ``"stage2_layer_conv"``. A string is iterated character by
            character, as the authors' code does (their configs pass ``"layer_conv"``: the same grouping for their
            ResNets, under other warehouse names).
        nonlocal_basis_ratio: below 1, the attentions reach the other layers' cells through ``fc3`` from
            ``max(int(other cells * ratio), 16)`` coefficients (fewer parameters: "KW (1/2x)").
        spatial_partition: cut kernels into 1x1 cells (else every layer of a warehouse must share its kernel size).

    Each of ``reduction``, ``cell_num_ratio``, ``cell_inplane_ratio``, ``cell_outplane_ratio`` and
    ``spatial_partition`` is one value or one per warehouse.

    Shape:
        - Input: anything; ``forward`` returns it unchanged, so that an ``nn.Sequential`` may hold the manager.
        - Output: the input.

    Differs from the authors' Warehouse_Manager (docs/kernel_warehouse.md):
        - a ``cell_num_ratio`` that leaves cells unowned raises a ``ValueError`` (theirs an ``IndexError``);
        - :meth:`reset_warehouses` re-initialises the cells after a meta-device build.

    Examples:
        >>> manager = WarehouseManager(cell_num_ratio=2, sharing_range=("layer", "conv"))
        >>> convs = [manager.reserve(8, 8, 3, padding=1, warehouse_name=f"stage0_layer{i}_conv1") for i in (1, 2)]
        >>> net = torch.nn.Sequential(*convs, manager)
        >>> manager.store()
        >>> manager.allocate(net)
        >>> [tuple(cells.shape) for cells in manager.weights]  # one warehouse, shared by both convs
        [(36, 8, 8, 1, 1)]
        >>> net(torch.randn(2, 8, 6, 6)).shape
        torch.Size([2, 8, 6, 6])
    """

    def __init__(
        self,
        reduction: Ratio = 0.0625,
        cell_num_ratio: Ratio = 1.0,
        cell_inplane_ratio: Ratio = 1.0,
        cell_outplane_ratio: Ratio = 1.0,
        sharing_range: Sequence[str] | str = (),
        nonlocal_basis_ratio: float = 1.0,
        spatial_partition: bool | Sequence[bool] = True,
    ) -> None:
        super().__init__()
        self.reduction = _checked(reduction, "reduction", check_positive)
        self.cell_num_ratio = _checked(cell_num_ratio, "cell_num_ratio", check_positive)
        self.cell_inplane_ratio = _checked(cell_inplane_ratio, "cell_inplane_ratio", check_positive)
        self.cell_outplane_ratio = _checked(cell_outplane_ratio, "cell_outplane_ratio", check_positive)
        self.spatial_partition = _checked(spatial_partition, "spatial_partition", check_bool)
        parts_ok = isinstance(sharing_range, Sequence) and all(isinstance(part, str) for part in sharing_range)
        if not parts_ok:  # a string is a sequence of one-character parts, as the authors' code reads it
            raise ArgumentTypeError(
                f"sharing_range must be a sequence of name parts (or a string), got "
                f"{type(sharing_range).__name__} {sharing_range!r}"
            )
        self.sharing_range = sharing_range
        self.nonlocal_basis_ratio = check_positive(nonlocal_basis_ratio, "nonlocal_basis_ratio")
        self.warehouses: dict[str, list[tuple[int, ...]]] = {}  # name -> the kernel shapes of its layers
        self.weights = nn.ParameterList()
        self._settings: list[dict[str, Any]] = []

    def fuse_warehouse_name(self, name: str) -> str:
        """The warehouse of a layer named ``name``: each ``_``-separated part that starts with a shared name
        becomes that name.
        """
        parts = []
        for part in name.split("_"):
            for shared in self.sharing_range:
                if part.startswith(shared):
                    part = shared
            parts.append(part)
        return "_".join(parts)

    def reserve(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int | Sequence[int] = 1,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        warehouse_name: str = "default",
        enabled: bool = True,
        layer_type: str = "conv2d",
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> nn.Module:
        """A KW layer of warehouse ``fuse_warehouse_name(warehouse_name)`` (its cells come with :meth:`store` and
        :meth:`allocate`), or with ``enabled=False`` the plain ``nn.Conv{1,2,3}d`` / ``nn.Linear``.
        """
        if layer_type not in LAYER_TYPES:
            raise ValueError(f"layer_type must be one of {sorted(LAYER_TYPES)}, got {layer_type!r}")
        if self._settings:
            raise ValueError("this WarehouseManager has stored its warehouses: reserve every layer before store()")
        kw_type, plain_type = LAYER_TYPES[layer_type]
        if not check_bool(enabled, "enabled"):
            if plain_type is nn.Linear:
                return nn.Linear(in_planes, out_planes, bias=bias, device=device, dtype=dtype)
            return plain_type(
                in_planes,
                out_planes,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=bias,
                device=device,
                dtype=dtype,
            )
        name = self.fuse_warehouse_name(warehouse_name)
        index = list(self.warehouses).index(name) if name in self.warehouses else len(self.warehouses)
        options: dict[str, Any] = dict(warehouse_id=index, manager=self, device=device, dtype=dtype)
        layer: nn.Module
        conv: KWConvNd
        if kw_type is KWLinear:
            linear = KWLinear(in_planes, out_planes, bias=bias, **options)
            layer, conv = linear, linear.conv
        else:
            conv = cast(type[KWConvNd], kw_type)(
                in_planes, out_planes, kernel_size, stride, padding, dilation, groups, bias, **options
            )
            layer = conv
        self.warehouses.setdefault(name, []).append(conv.weight_shape)
        return layer

    def store(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        """Create the warehouses: cells of (gcd(out) * cell_outplane_ratio, gcd(in) * cell_inplane_ratio, 1, ...)
        channels and positions, int(cell_num_ratio * the cells its layers divide into) of them (at least one).
        """
        names = list(self.warehouses)
        count = len(names)
        if not count:
            raise ValueError("no KW layer was reserved: nothing to store")
        settings = {
            "reduction": _per_warehouse(self.reduction, count, "reduction"),
            "cell_num_ratio": _per_warehouse(self.cell_num_ratio, count, "cell_num_ratio"),
            "cell_inplane_ratio": _per_warehouse(self.cell_inplane_ratio, count, "cell_inplane_ratio"),
            "cell_outplane_ratio": _per_warehouse(self.cell_outplane_ratio, count, "cell_outplane_ratio"),
            "spatial_partition": _per_warehouse(self.spatial_partition, count, "spatial_partition"),
        }
        self._settings = []
        for idx, name in enumerate(names):
            setting = {key: values[idx] for key, values in settings.items()}
            shape = self._cell_shape(name, self.warehouses[name], setting)
            mixtures = sum(self._mixtures(layer, shape) for layer in self.warehouses[name])
            cells = max(int(mixtures * setting["cell_num_ratio"]), 1)
            self.weights.append(nn.Parameter(torch.randn(cells, *shape, device=device, dtype=dtype)))
            self._settings.append(setting)

    @staticmethod
    def _mixtures(layer: tuple[int, ...], cell: tuple[int, ...]) -> int:
        """Cell positions of a kernel ``layer`` (O, I / groups, *k) cut into ``cell`` (the authors' count)."""
        spatial = math.prod(k // c for k, c in zip(layer[2:], cell[2:], strict=True))
        return int(layer[0] // cell[0] * layer[1] // cell[1]) * spatial

    @staticmethod
    def _cell_shape(name: str, layers: list[tuple[int, ...]], setting: dict[str, Any]) -> tuple[int, ...]:
        out_gcd, in_gcd = math.gcd(*(s[0] for s in layers)), math.gcd(*(s[1] for s in layers))
        kernels = {s[2:] for s in layers}
        if len({len(k) for k in kernels}) > 1:
            raise ValueError(f"warehouse {name!r} mixes layers of different dimensions: {sorted(kernels)}")
        if not setting["spatial_partition"] and len(kernels) > 1:
            raise ValueError(
                f"warehouse {name!r} without spatial_partition needs one kernel size, got {sorted(kernels)}"
            )
        cell_in = max(int(in_gcd * setting["cell_inplane_ratio"]), 1)
        cell_out = max(int(out_gcd * setting["cell_outplane_ratio"]), 1)
        kernel = next(iter(kernels))
        cell_kernel = (1,) * len(kernel) if setting["spatial_partition"] else kernel
        for shape in layers:
            if shape[0] % cell_out or shape[1] % cell_in:
                raise ValueError(
                    f"warehouse {name!r}: cells of {cell_out} output x {cell_in} input channels do not tile a "
                    f"{shape[0]} x {shape[1]} (out x in / groups) kernel; the channels' common divisors are "
                    f"{out_gcd} and {in_gcd}: choose cell_outplane_ratio / cell_inplane_ratio so that the cells "
                    f"divide every layer"
                )
        return (cell_out, cell_in, *cell_kernel)

    def allocate(self, network: nn.Module) -> None:
        """Give every KW layer of ``network`` (module order) its attention and its own cells, initialised as the
        authors do (each layer's cells Kaiming normal, fan out); every cell must be owned exactly once.
        """
        if not self._settings:
            raise ValueError("store() the warehouses before allocate()")
        ends = [0] * len(self.weights)
        for layer in self.layers(network):
            idx = layer.warehouse_id
            setting = self._settings[idx]
            start = ends[idx]
            ends[idx] = layer.init_attention(
                self.weights[idx], start, setting["reduction"], setting["cell_num_ratio"], self.nonlocal_basis_ratio
            )
        for idx, (end, cells) in enumerate(zip(ends, self.weights, strict=True)):
            if end != cells.shape[0]:
                setting = self._settings[idx]
                raise ValueError(
                    f"warehouse {list(self.warehouses)[idx]!r}: its layers own {end} of its {cells.shape[0]} cells "
                    f"(cell_num_ratio {setting['cell_num_ratio']:g}); {CELL_RATIO_ADVICE}, and allocate the "
                    "network that holds all the layers"
                )
        self._init_cells(network)

    def layers(self, network: nn.Module) -> list[KWConvNd]:
        """The KW layers of ``network`` that use this manager, in module order."""
        return [m for m in network.modules() if isinstance(m, KWConvNd) and m.manager is self]

    @torch.no_grad()
    def _init_cells(self, network: nn.Module) -> None:
        for layer in self.layers(network):
            start, end = layer.cell_range
            cells = layer.cells()
            nn.init.kaiming_normal_(cells[start:end].view(-1, *cells.shape[2:]), mode="fan_out", nonlinearity="relu")

    @torch.no_grad()
    def reset_warehouses(self, network: nn.Module) -> None:
        """Re-initialise the warehouses as :meth:`allocate` did (after a meta-device build and ``to_empty``, for
        example); each KW layer's own parts are its ``reset_parameters``'.
        """
        for cells in self.weights:
            cells.normal_()
        self._init_cells(network)

    def forward(self, x: Any) -> Any:
        """Its input, unchanged: an ``nn.Sequential`` that holds the manager (``convert`` attaches it to the model)
        calls every child in turn.
        """
        return x

    def extra_repr(self) -> str:
        shapes = ", ".join(f"{name}: {tuple(w.shape)}" for name, w in zip(self.warehouses, self.weights, strict=False))
        return f"warehouses=[{shapes}]"
