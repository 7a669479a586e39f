import math

import pytest
import torch
import torch.nn as nn

from freqdyn import MRFA, CondConv2d, DynamicConv2d, FDConv, KWConv1d, KWConv2d, KWConv3d, KWLinear, ODConv2d
from freqdyn.analysis import (
    attention_spread,
    effective_receptive_field,
    erf_radius,
    frequency_responses,
    kernel_bank,
    response_similarity,
)
from freqdyn.layers.kernel_warehouse import WarehouseManager, set_warehouse_temperature


@pytest.mark.parametrize("cls", [DynamicConv2d, CondConv2d, ODConv2d])
def test_kernel_bank_family_responses_look_alike(cls):
    layer = cls.from_conv(nn.Conv2d(32, 32, 3, padding=1), num_experts=4)
    bank = kernel_bank(layer)
    assert bank.shape == (4, 32, 32, 3, 3)
    assert response_similarity(frequency_responses(bank, "kernel")) > 0.95


def test_fdconv_groups_are_disjoint_in_its_fourier_domain():
    layer = FDConv(32, 32, 3, padding=1, kernel_num=6)
    bank = kernel_bank(layer)
    assert bank.shape == (6, 32, 32, 3, 3)
    responses = frequency_responses(bank, "matrix")
    assert response_similarity(responses) < 1e-6
    support = (responses > 1e-4 * responses.amax()).double()  # every spectrum coefficient belongs to exactly one group
    torch.testing.assert_close(support.sum(0), torch.ones_like(support[0]))


@pytest.mark.parametrize("cls", [KWConv1d, KWConv2d, KWLinear])
def test_kernel_bank_of_kw_is_its_warehouse(cls):
    if cls is KWLinear:  # a network's layer: its KW conv is nested (the authors' layout)
        manager = WarehouseManager(cell_num_ratio=4)
        layer = manager.reserve(32, 48, layer_type="linear")
        manager.store()
        manager.allocate(layer)
    else:
        layer = cls.standalone(32, 48, 3, padding=1, cell_num_ratio=4)
        manager = layer.manager
    conv = layer.conv if cls is KWLinear else layer
    cells = manager.state_dict()["weights.0"]
    bank = kernel_bank(conv)
    assert bank.shape == (*cells.shape[:3], 1, 1)  # 1x1 cells (the authors' spatial partition), 1-D ones as 1 x 1
    torch.testing.assert_close(bank.flatten(), cells.flatten(), rtol=0, atol=0)
    # independent random cells: their |rfft2| fields are Rayleigh-like, whose mean cosine similarity is pi/4
    assert response_similarity(frequency_responses(bank, "matrix")) == pytest.approx(math.pi / 4, abs=0.03)
    with pytest.raises(ValueError, match="3-D cells"):
        kernel_bank(KWConv3d.standalone(8, 8, 3))


def test_kernel_responses_of_1x1_kernels_are_flat():
    bank = torch.randn(3, 5, 4, 1, 1, dtype=torch.float64)
    padded = torch.zeros(3, 5, 4, 9, 9, dtype=torch.float64)
    padded[..., 0, 0] = bank[..., 0, 0]
    expected = torch.fft.fft2(padded).abs().mean(dim=(1, 2))  # the FFT of the zero-padded kernels, computed
    torch.testing.assert_close(frequency_responses(bank, "kernel", size=9), expected)


def test_attention_spread_of_kw_is_the_share_on_each_positions_own_cell():
    torch.manual_seed(0)
    layer = KWConv2d.standalone(8, 8, 3, padding=1, cell_num_ratio=1)  # 9 positions (1x1 cells), 9 cells
    x = torch.randn(2, 8, 6, 6)
    for temperature in (1.0, 0.4):
        set_warehouse_temperature(layer, temperature)
        spread = attention_spread(nn.Sequential(layer), x)
        weights = layer.attention(x.mean(dim=(2, 3))).abs().view(2, 9, 9)  # (B, positions, cells)
        own = weights.diagonal(dim1=1, dim2=2).sum() / weights.sum()  # position m's own cell is cell m
        assert spread == {"0": {"own_cell": pytest.approx(own.item(), abs=1e-6)}}
        assert (own == 1.0) == (temperature == 1.0)


def test_similarity_and_errors():
    same = torch.rand(1, 5, 5).expand(3, 5, 5)
    assert response_similarity(same) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no kernel bank"):
        kernel_bank(nn.Conv2d(3, 3, 3))
    with pytest.raises(ValueError, match="domain"):
        frequency_responses(torch.rand(2, 1, 1, 3, 3), "nope")


def test_erf_support_matches_the_receptive_field():
    x = torch.randn(2, 8, 41, 41)
    erf = effective_receptive_field(MRFA(8), x)
    support = (erf > 0).nonzero()
    assert (support - 20).abs().max() == 12 and erf.max() == 1.0
    conv_erf = effective_receptive_field(nn.Conv2d(8, 8, 3, padding=1), x)
    assert erf_radius(conv_erf, mass=1.0) == 1


def test_attention_spread_is_zero_for_a_converted_network():
    from freqdyn import DynamicConv2d, FDConv, FDLinear
    from freqdyn.analysis import attention_spread

    model = nn.Sequential(FDConv(24, 32, 3, kernel_num=4), DynamicConv2d(32, 32, 3, num_experts=3))
    spread = attention_spread(model, torch.randn(2, 24, 12, 12))
    assert set(spread) == {"0", "1"} and all(v == 0.0 for v in spread["0"].values())  # FDConv: exactly neutral
    assert spread["1"]["kernel"] < 0.05  # DY-Conv's random attention at temperature 30: nearly uniform
    linear = FDLinear(16, 24, kernel_num=4)
    assert attention_spread(nn.Sequential(linear), torch.randn(3, 16))["0"]["kernel"] == 0.0


@pytest.mark.parametrize("plot", ["responses", "erf"])
def test_plots_have_ticks_and_units(plot, tmp_path, monkeypatch):
    """Every panel of the analysis plots has ticks and axis labels with their units (frequency in cycles per
    row / column / pixel, ERF offsets in pixels) and a labelled colour bar."""
    figure = pytest.importorskip("matplotlib.figure")
    from freqdyn import analysis

    saved = []
    monkeypatch.setattr(figure.Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    if plot == "responses":
        responses = analysis.frequency_responses(torch.randn(3, 4, 4, 3, 3), "matrix")
        analysis.plot_frequency_responses({"bank": responses}, tmp_path / "r.png")
    else:
        erf = torch.rand(17, 17)
        analysis.plot_erf({"net": erf / erf.max()}, tmp_path / "e.png")
    panels = [ax for ax in saved[0].axes if ax.images]
    colorbars = [ax for ax in saved[0].axes if not ax.images and ax.get_ylabel()]
    assert panels and colorbars
    for ax in panels:
        assert len(ax.get_xticks()) >= 2 and ("cycles" in ax.get_xlabel() or "pixels" in ax.get_xlabel())
    assert any(
        len(ax.get_yticks()) >= 2 and ("cycles" in ax.get_ylabel() or "pixels" in ax.get_ylabel()) for ax in panels
    )
