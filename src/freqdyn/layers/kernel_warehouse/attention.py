"""The attention of a KernelWarehouse layer (Li et al., ICML 2024, §3): for each cell position of its kernel, a
signed mixture of the warehouse's shared cells, blended towards a one-hot assignment by a temperature.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from .._common.attention_conv import AttentionLinear
from .._common.attention_norm import attention_norm, reset_norm
from .._common.checks import check_real, load_checked_temperature
from .._common.device_dtype import as_dtype, factory_kwargs, scalar
from .._common.program_mode import compute_dtype

MIN_HIDDEN = 16  # the authors' floor on the hidden width
EPS = 1e-3  # added to the sum of absolute values that normalises each mixture


CELL_RATIO_ADVICE = (
    "use a cell_num_ratio of at least max(cell_inplane_ratio, cell_outplane_ratio) that gives every "
    "cell position a whole number of cells (the authors' 1/4, 1/2, 1, 2, 4; 1/2 and 1/4 with "
    "cell_inplane_ratio = cell_outplane_ratio = 1/2)"
)


def check_warehouse_temperature(value: float) -> float:
    """A KW temperature: the blend weight of the one-hot assignment, in [0, 1]."""
    value = check_real(value, "temperature", 0.0)
    if value > 1.0:
        raise ValueError(f"temperature must be in [0, 1] (the weight of the one-hot cell assignment), got {value!r}")
    return value


class WarehouseAttention(nn.Module):
    """Pooled (B, C) -> cell weights (B * mixtures, cells): one mixture of the warehouse's ``cells`` cells per cell
    position of the layer's kernel.

    fc1 (no bias) -> BatchNorm -> ReLU -> fc2 gives, per position, ``cells + 1`` logits (the last one a zero cell);
    each row is divided by its sum of absolute values + 1e-3, blended as (1 - t) * row + t * ``temp_bias`` (a one-hot
    row: the cell the layer owns at that position, or the zero cell) and the zero cell dropped. With
    ``nonlocal_basis_ratio`` < 1, fc2 predicts the layer's own cells and ``num_basis`` coefficients that fc3 maps to
    the other layers' cells, plus a learnt ``basis_bias``.

    The temperature t is a float buffer (0 at construction, as in the authors' code, whose training loop sets it):
    EMA copies, DDP and ``load_state_dict`` move it with the weights; a checkpoint without it keeps the current one.
    ``temp_bias`` is rebuilt from the layout (:meth:`init_temperature`), not saved, as in the authors' code. It
    follows the module's dtype; the authors' stays float32, so in a float64 model their t * temp_bias is rounded
    to float32 (outputs differ by ~1e-8 relative for 0 < t < 1; float32 models agree to rounding).
    """

    temperature: Tensor
    temp_bias: Tensor

    def __init__(
        self,
        in_planes: int,
        reduction: float,
        cells: int,
        mixtures: int,
        cell_num_ratio: float,
        nonlocal_basis_ratio: float,
        start_cell: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw = factory_kwargs(device, dtype)
        hidden = max(int(in_planes * reduction), MIN_HIDDEN)
        self.cells, self.mixtures, self.start_cell = cells, mixtures, start_cell
        self.planes_per_mixture = cells + 1
        self.local_cells = int(cell_num_ratio * mixtures)
        self.nonlocal_cells = cells - self.local_cells
        self.fc1 = AttentionLinear(in_planes, hidden, bias=False, **kw)
        self.norm1 = attention_norm("batch", hidden, **kw)
        if nonlocal_basis_ratio >= 1.0:
            self.num_basis = 0
            self.fc2 = AttentionLinear(hidden, self.planes_per_mixture * mixtures, **kw)
            self.fc3 = None
            self.basis_bias = None
        else:
            self.num_basis = max(int(self.nonlocal_cells * nonlocal_basis_ratio), MIN_HIDDEN)
            self.fc2 = AttentionLinear(hidden, (self.local_cells + self.num_basis + 1) * mixtures, bias=False, **kw)
            self.fc3 = AttentionLinear(self.num_basis, self.nonlocal_cells, bias=False, **kw)
            self.basis_bias = nn.Parameter(torch.zeros(self.planes_per_mixture * mixtures, **kw))
        self.register_buffer("temperature", torch.zeros((), **kw))
        self.register_buffer("temp_bias", torch.zeros(self.planes_per_mixture * mixtures, **kw), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' init: linear layers Kaiming normal (fan out), biases 0, BatchNorm (1, 0); the temperature
        and the norm's statistics back to their construction values.
        """
        with torch.no_grad():
            self.temperature.zero_()
        for fc in (self.fc1, self.fc2, self.fc3):
            if fc is not None:
                nn.init.kaiming_normal_(fc.weight, mode="fan_out", nonlinearity="relu")
                if fc.bias is not None:
                    nn.init.zeros_(fc.bias)
        if self.basis_bias is not None:
            nn.init.zeros_(self.basis_bias)
        reset_norm(self.norm1)

    @torch.no_grad()
    def init_temperature(self, start_cell: int, cell_num_ratio: float) -> int:
        """Set ``temp_bias``: the one-hot cell of each position, the layer's own cells from ``start_cell`` on;
        returns the cell after the last one the layer owns.

        With ``cell_num_ratio`` >= 1 each position owns int(ratio) cells and points at the first; below 1, one
        position in every 1 / ratio owns a cell and the others point at the zero cell.
        """
        self.temp_bias.zero_()
        width = self.planes_per_mixture
        if cell_num_ratio >= 1.0:
            step = int(cell_num_ratio)
            for idx in range(self.mixtures):
                self._check_owned(start_cell + step - 1, cell_num_ratio)
                self.temp_bias[idx * width + start_cell] = 1
                start_cell += step
            return start_cell
        share = int(1.0 / cell_num_ratio)
        for idx in range(self.mixtures):
            if idx % share == (idx // share) % share:
                self._check_owned(start_cell, cell_num_ratio)
                self.temp_bias[idx * width + start_cell] = 1
                start_cell += 1
            else:
                self.temp_bias[idx * width + width - 1] = 1
        return start_cell

    def _check_owned(self, cell: int, cell_num_ratio: float) -> None:
        """A clear error where the authors' code writes past ``temp_bias``: the layers' positions claim more cells
        than the warehouse holds.
        """
        if cell >= self.cells:
            raise ValueError(
                f"the layers of this warehouse claim more than its {self.cells} cells (cell_num_ratio "
                f"{cell_num_ratio:g}): {CELL_RATIO_ADVICE}"
            )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # the authors' state_dict has none: the temperature is a plain attribute there
        load_checked_temperature(state_dict, prefix + "temperature", self.temperature, check_warehouse_temperature)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _cell_logits(self, logits: Tensor) -> Tensor:
        """fc2's output (B, ...) -> (B * mixtures, cells + 1) logits over every cell and the zero cell."""
        if self.fc3 is None or self.basis_bias is None:
            return logits.reshape(-1, self.planes_per_mixture)
        rows = logits.reshape(-1, self.local_cells + self.num_basis + 1)
        local, basis, zero = rows.split([self.local_cells, self.num_basis, 1], dim=1)
        others = self.fc3(basis)  # the other layers' cells, in warehouse order around this layer's own
        cells = torch.cat([others[:, : self.start_cell], local, others[:, self.start_cell :], zero], dim=1)
        bias = as_dtype(self.basis_bias, cells.dtype).view(self.mixtures, self.planes_per_mixture)
        return (cells.view(-1, self.mixtures, self.planes_per_mixture) + bias).view(-1, self.planes_per_mixture)

    def forward(self, pooled: Tensor) -> Tensor:
        """(B, C) -> (B * mixtures, cells), in float32 for half inputs."""
        with torch.autocast(pooled.device.type, enabled=False):
            z = as_dtype(pooled, compute_dtype(pooled.dtype))
            rows = self._cell_logits(self.fc2(torch.relu(self.norm1(self.fc1(z)))))
            rows = rows / (rows.abs().sum(dim=1, keepdim=True) + scalar(EPS, rows))
            target = as_dtype(self.temp_bias, rows.dtype).view(self.mixtures, self.planes_per_mixture)
            blended = torch.lerp(
                rows.view(-1, self.mixtures, self.planes_per_mixture), target, as_dtype(self.temperature, rows.dtype)
            )  # (1 - t) * rows + t * target
        return blended.view(-1, self.planes_per_mixture)[:, :-1]

    def extra_repr(self) -> str:
        basis = f", num_basis={self.num_basis}" if self.fc3 is not None else ""
        return f"cells={self.cells}, mixtures={self.mixtures}, start_cell={self.start_cell}{basis}"
