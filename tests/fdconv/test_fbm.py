import pytest
import torch
import torch.nn.functional as F

from freqdyn import FrequencyBandModulation
from freqdyn.layers.fdconv.low_pass import band_masks, fft_band_modulation
from freqdyn.tools.reference import naive_lowpass
from helpers import gradcheck_module, perturb_


def attentions_for(coef: torch.Tensor) -> torch.Tensor:
    """Band attentions a (B, G, n, H, W) whose low-pass coefficients are ``coef``: a_j = 1 - sum_{k >= j} c_k."""
    return 1 - coef.flip(2).cumsum(2).flip(2)


@pytest.mark.parametrize("size", [(7, 7), (8, 8), (13, 6), (1, 5), (32, 20), (56, 56), (17, 17), (100, 30)])
@pytest.mark.parametrize("k_list", [(2, 4, 8), (1, 3)])
@pytest.mark.parametrize("masks", ["official", "exact"])
def test_low_passes_equal_fft_box_masks(size, k_list, masks):
    # official masks at 56, 17 and 100 rows are not symmetric in +-f: the Im(A_j) term is exercised
    fbm = FrequencyBandModulation(6, k_list=k_list, masks=masks).double()
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    for low, k in zip(fbm.low_passes(x), k_list, strict=True):
        torch.testing.assert_close(low, naive_lowpass(x, k, masks), rtol=0, atol=1e-10)
    # the batched FFT route, its weights chosen so that each band comes out alone (one group, one channel group)
    lows = torch.stack([naive_lowpass(x, k, masks) for k in k_list], dim=1)  # (B, n, C, H, W)
    coef = torch.rand(2, 1, len(k_list), *size, dtype=torch.float64)
    att = attentions_for(coef)
    expected = (lows * coef[:, 0, :, None]).sum(1) + att[:, 0, :1] * x
    got = fft_band_modulation(x[:, None], att, k_list, masks)[:, 0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


def test_fft_and_separable_routes_agree():
    fbm = perturb_(FrequencyBandModulation(4), seed=3).double()
    separable = perturb_(FrequencyBandModulation(4, transform="separable"), seed=3).double()
    x = torch.randn(1, 4, 130, 97, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fbm(x), separable(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k_list", [(2, 4, 8), (1, 3), (3, 5, 16)])
def test_official_masks_are_the_nearest_resized_64_grid(k_list):
    fy = torch.fft.fftfreq(64, dtype=torch.float32).abs()[:, None]
    fx = torch.fft.rfftfreq(64, dtype=torch.float32)[None, :]
    grid = torch.stack([torch.maximum(fy, fx) < 0.5 / k + 1e-8 for k in k_list]).float()
    for height in [1, 2, 5, 7, 13, 31, 56, 64, 65, 100, 161]:
        for width in [1, 4, 7, 17, 56, 64, 129]:
            rows, cols = band_masks(height, width, k_list)
            expected = F.interpolate(grid[None], size=(height, width // 2 + 1), mode="nearest")[0] > 0.5
            assert torch.equal(rows[:, :, None] & cols[:, None, :], expected), (height, width)


def test_exact_masks_include_every_edge():
    rows, cols = band_masks(16, 16, (2, 4, 8), "exact")
    assert rows.sum(1).tolist() == [9, 5, 3] and cols.sum(1).tolist() == [5, 3, 2]
    rows, cols = band_masks(16, 16, (2, 4, 8), "official")
    assert rows.sum(1).tolist() == [7, 5, 3] and cols.sum(1).tolist() == [5, 3, 2]  # |f| = 0.25 excluded


def test_neutral_state_is_identity_and_output_keeps_dtype():
    fbm = FrequencyBandModulation(8)
    x = torch.randn(2, 8, 11, 9)
    torch.testing.assert_close(fbm(x), x, rtol=0, atol=1e-5)
    half = fbm.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "channels,groups,size", [(4, 2, (9, 10)), (16, 1, (9, 10)), (16, 2, (7, 5)), (24, 1, (1, 6)), (8, 1, (2, 2))]
)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("transform", ["separable", "fft"])
def test_modulated_bands_match_independent_sum(channels, groups, size, channels_last, transform):
    # C / G >= 8 takes the GEMM attention and the fused synthesis (G == 1) or per-band sums (G > 1)
    fbm = perturb_(FrequencyBandModulation(channels, spatial_group=groups, transform=transform), seed=1).double()
    x = torch.randn(2, channels, *size, dtype=torch.float64)
    lows = [naive_lowpass(x, k) for k in fbm.k_list]
    bands = [x - lows[0], lows[0] - lows[1], lows[1] - lows[2]]
    expected = lows[2].clone()
    for conv, band in zip(fbm.freq_weight_conv_list, bands, strict=True):
        att = 2 * torch.sigmoid(F.conv2d(x, conv.weight, conv.bias, padding=1, groups=groups))
        expected += att.repeat_interleave(channels // groups, dim=1) * band
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = fbm(x)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("channels,groups", [(4, 1), (8, 1), (16, 2)])
@pytest.mark.parametrize("transform", ["separable", "fft"])
def test_gradcheck(channels, groups, transform):
    fbm = perturb_(FrequencyBandModulation(channels, spatial_group=groups, transform=transform), seed=2).double()
    x = torch.randn(1, channels, 6, 7, dtype=torch.float64, requires_grad=True)
    assert gradcheck_module(fbm, x)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(k_list=()),
        dict(k_list=(4, 2)),
        dict(spatial_group=3),
        dict(act="relu"),
        dict(spatial_kernel=2),
        dict(masks="box"),
        dict(transform="dft"),
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        FrequencyBandModulation(8, **kwargs)


@pytest.mark.parametrize("temp", [0.5, 16.0])
def test_fbm_temperature_divides_the_attention_logits(temp):
    """temp=T equals the layer whose attention convs (weights and biases) are divided by T."""
    fbm = FrequencyBandModulation(16, spatial_group=2, temp=temp, dtype=torch.float64)
    with torch.no_grad():
        for conv in fbm.freq_weight_conv_list:
            conv.weight.normal_(0, 0.3)
            conv.bias.normal_(0, 0.5)
    scaled = FrequencyBandModulation(16, spatial_group=2, dtype=torch.float64)
    scaled.load_state_dict({k: v / temp for k, v in fbm.state_dict().items()})
    x = torch.randn(2, 16, 9, 10, dtype=torch.float64)
    torch.testing.assert_close(fbm(x), scaled(x), rtol=1e-12, atol=1e-12)
    plain = FrequencyBandModulation(16, spatial_group=2, dtype=torch.float64)
    plain.load_state_dict(fbm.state_dict())
    assert not torch.allclose(fbm(x), plain(x))  # the temperature matters


@pytest.mark.parametrize("transform", ["separable", "fft"])
def test_both_routes_take_empty_half_and_channels_last_inputs(transform):
    fbm = perturb_(FrequencyBandModulation(8, transform=transform), seed=4)
    empty = torch.randn(0, 8, 40, 36, requires_grad=True)
    fbm(empty).sum().backward()
    assert empty.grad is not None and empty.grad.shape == empty.shape
    x = torch.randn(2, 8, 40, 36)
    reference = fbm(x)
    half = fbm.to(torch.bfloat16)(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
    assert half.dtype == torch.bfloat16 and half.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(half.float(), reference, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("size", [(17, 13), (56, 20), (100, 7), (8, 8)])
@pytest.mark.parametrize("masks", ["official", "exact"])
def test_low_passes_are_symmetric_and_the_band_sum_backward_matches_finite_differences(size, masks):
    """fft_band_modulation's backward applies L_j for L_j^T: true for every size, the official masks' resized rows that
    are not symmetric in +-f included (their Hermitian completion is still a real even filter)."""
    height, width = size
    n = height * width
    unit = torch.eye(n, dtype=torch.float64).reshape(n, 1, 1, height, width)
    for band in range(3):
        coef = torch.zeros(n, 1, 3, height, width, dtype=torch.float64)
        coef[:, :, band] = 1
        att = attentions_for(coef)  # a_1 = 0: the output is L_j alone
        matrix = fft_band_modulation(unit, att, (2, 4, 8), masks).reshape(n, n)  # row i: L_j of unit vector i
        torch.testing.assert_close(matrix, matrix.t(), rtol=0, atol=1e-12)
    x = torch.randn(2, 2, 3, height, width, dtype=torch.float64, requires_grad=True)
    att = torch.rand(2, 2, 3, height, width, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: fft_band_modulation(a, b, (2, 4, 8), masks), (x, att), fast_mode=True)


@pytest.mark.parametrize("wanted", ["x", "att", "both"])
def test_band_modulation_gradients_of_either_input_alone(wanted, monkeypatch):
    """The custom backward's three routes (x only, the attentions only, both from one pair of transforms) against
    autograd through the plain differentiable ops."""
    import importlib

    low_pass = importlib.import_module("freqdyn.layers.fdconv.low_pass")
    x = torch.randn(2, 2, 3, 9, 10, dtype=torch.float64, requires_grad=wanted in ("x", "both"))
    att = torch.rand(2, 2, 3, 9, 10, dtype=torch.float64, requires_grad=wanted in ("att", "both"))
    inputs = [t for t in (x, att) if t.requires_grad]
    weight = torch.randn(2, 2, 3, 9, 10, dtype=torch.float64)
    ours = torch.autograd.grad((low_pass.fft_band_modulation(x, att, (2, 4, 8), "official") * weight).sum(), inputs)
    monkeypatch.setattr(low_pass, "may_use_custom_kernels", lambda: False)
    plain = torch.autograd.grad((low_pass.fft_band_modulation(x, att, (2, 4, 8), "official") * weight).sum(), inputs)
    for a, b in zip(ours, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
