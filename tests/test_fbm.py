import pytest
import torch

from conftest import perturb_
from freqdyn import FrequencyBandModulation
from freqdyn.reference import naive_lowpass


@pytest.mark.parametrize("size", [(7, 7), (8, 8), (13, 6), (1, 5), (32, 20), (56, 56)])
@pytest.mark.parametrize("k_list", [(2, 4, 8), (1, 3)])
def test_low_passes_equal_fft_box_masks(size, k_list):
    fbm = FrequencyBandModulation(6, k_list=k_list).double()
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    for low, k in zip(fbm.low_passes(x), k_list):
        torch.testing.assert_close(low, naive_lowpass(x, k), rtol=0, atol=1e-10)


def test_neutral_state_is_identity_and_output_keeps_dtype():
    fbm = FrequencyBandModulation(8)
    x = torch.randn(2, 8, 11, 9)
    torch.testing.assert_close(fbm(x), x, rtol=0, atol=1e-5)
    half = fbm.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16


def test_modulated_bands_match_independent_sum():
    fbm = perturb_(FrequencyBandModulation(4, spatial_group=2), seed=1).double()
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64)
    lows = [naive_lowpass(x, k) for k in fbm.k_list]
    bands = [x - lows[0], lows[0] - lows[1], lows[1] - lows[2]]
    expected = lows[2].clone()
    for conv, band in zip(fbm.freq_weight_conv_list, bands):
        att = 2 * torch.sigmoid(torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1, groups=2))
        expected += att.repeat_interleave(2, dim=1) * band
    torch.testing.assert_close(fbm(x), expected, rtol=1e-10, atol=1e-10)


def test_gradcheck():
    fbm = perturb_(FrequencyBandModulation(4), seed=2).double()
    x = torch.randn(1, 4, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fbm, (x,))


@pytest.mark.parametrize("kwargs", [dict(k_list=()), dict(k_list=(4, 2)), dict(spatial_group=3), dict(act="relu")])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        FrequencyBandModulation(8, **kwargs)
