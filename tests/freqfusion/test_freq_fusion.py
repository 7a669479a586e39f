import io

import pytest
import torch
import torch.nn.functional as F

from freqdyn import FreqFusion
from freqdyn.layers import LocalSimGuidedSampler, local_similarity
from freqdyn.tools.reference import naive_freq_fusion
from helpers import gradcheck_module

OPTIONS = [
    {},
    {"feature_resample": True},
    {"feature_resample": True, "up_group": 2, "hr_residual": False},
    {"use_high_pass": False, "feature_resample": True},
    {"hamming_window": False, "lowpass_kernel": 3, "highpass_kernel": 5},
    {"semi_conv": False},
    {"semi_conv": False, "upsample_mode": "bilinear", "align_corners": True, "use_high_pass": False},
    {"comp_feat_upsample": False, "feature_resample": True},
    {"comp_feat_upsample": False, "use_high_pass": False},
    {"use_low_pass": False, "upsample_mode": "bilinear"},
    {"use_low_pass": False, "upsample_mode": "nearest", "hr_residual": False},
    {"carafe_padding": "reflect", "up_group": 4, "encoder_kernel": 5, "encoder_dilation": 2},
    {"feature_resample": True, "feature_resample_norm": False, "feature_resample_group": 2},
    {"feature_resample": True, "direction_feat": "sim", "hamming_window": False},  # the SegNeXt copy
]
SIZES = [((16, 16), (8, 8)), ((15, 17), (8, 9)), ((17, 16), (8, 8)), ((2, 3), (1, 2))]


def perturbed(module, scale=0.3):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)
    return module


def hamming_blur(x, k):
    """Depthwise convolution with the normalised symmetric Hamming window, zero padding (mmcv CARAFE)."""
    w = torch.hamming_window(k, periodic=False, dtype=x.dtype)
    kernel = torch.outer(w, w) / torch.outer(w, w).sum()
    weight = kernel.expand(x.shape[1], 1, k, k)
    return F.conv2d(F.pad(x, [k // 2] * 4), weight, groups=x.shape[1])


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_matches_reference_structured_forward(options):
    layer = perturbed(FreqFusion(16, 24, compressed_channels=16, **options).double())
    hr, lr = torch.randn(2, 16, 12, 14, dtype=torch.float64), torch.randn(2, 24, 6, 7, dtype=torch.float64)
    for ours, ref in zip(layer(hr, lr), naive_freq_fusion(layer, hr, lr), strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("hr_size,lr_size", SIZES)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"feature_resample": True},
        {"semi_conv": False},
        {"comp_feat_upsample": False},
        {"use_low_pass": False, "upsample_mode": "bilinear"},
    ],
    ids=["default", "resample", "no-semi", "no-comp", "no-lowpass"],
)
def test_shapes_for_even_and_odd_size_pairs(hr_size, lr_size, options):
    layer = FreqFusion(16, 24, compressed_channels=16, **options)
    hr_out, lr_out = layer(torch.randn(2, 16, *hr_size), torch.randn(2, 24, *lr_size))
    assert hr_out.shape == (2, 16, *hr_size) and lr_out.shape == (2, 24, *hr_size)
    assert torch.isfinite(hr_out).all() and torch.isfinite(lr_out).all()


@pytest.mark.parametrize("resample", [False, True])
@pytest.mark.parametrize("hr_size,lr_size", [((12, 14), (6, 7)), ((11, 13), (6, 7))])
def test_zero_filter_generators_give_fixed_hamming_filters(resample, hr_size, lr_size):
    layer = perturbed(FreqFusion(8, 8, compressed_channels=8, feature_resample=resample)).double()
    layer.neutralise_()
    hr, lr = torch.randn(2, 8, *hr_size, dtype=torch.float64), torch.randn(2, 8, *lr_size, dtype=torch.float64)
    hr_out, lr_out = layer(hr, lr)
    torch.testing.assert_close(hr_out, 2 * hr - hamming_blur(hr, 3))
    up = hamming_blur(lr, 5).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)[..., : hr_size[0], : hr_size[1]]
    torch.testing.assert_close(lr_out, up)


def test_sampler_is_the_identity_at_zero_offsets():
    sampler = LocalSimGuidedSampler(16, groups=4, kernel_size=3).double()
    with torch.no_grad():
        sampler.offset.weight.zero_()
        sampler.hr_offset.weight.zero_()
    feature = torch.randn(2, 12, 9, 10, dtype=torch.float64)
    out = sampler(
        torch.randn(2, 16, 9, 10, dtype=torch.float64), torch.randn(2, 16, 5, 5, dtype=torch.float64), feature
    )
    torch.testing.assert_close(out, feature)


def test_local_similarity_matches_cosine_similarity():
    x = torch.randn(2, 6, 7, 8, dtype=torch.float64)
    sim = local_similarity(x, 3, 2)
    padded = F.pad(x, [2] * 4)
    for idx, (a, b) in enumerate([(a, b) for a in range(3) for b in range(3) if (a, b) != (1, 1)]):
        neighbour = padded[..., 2 * a : 2 * a + 7, 2 * b : 2 * b + 8]
        expected = F.cosine_similarity(x, neighbour, dim=1)
        torch.testing.assert_close(sim[:, idx], expected)


@pytest.mark.parametrize("options", [{"feature_resample": True}, {"up_group": 2, "comp_feat_upsample": False}])
def test_gradcheck(options):
    layer = perturbed(FreqFusion(8, 8, compressed_channels=8, feature_resample_group=2, **options)).double()
    hr = torch.randn(1, 8, 6, 5, dtype=torch.float64)
    lr = torch.randn(1, 8, 3, 3, dtype=torch.float64)

    class Summed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = layer

        def forward(self, x):
            a, b = self.inner(x, lr)
            return a + b

    assert gradcheck_module(Summed(), hr)


def test_every_parameter_gets_a_gradient():
    layer = FreqFusion(16, 16, compressed_channels=16, feature_resample=True)
    hr_out, lr_out = layer(torch.randn(2, 16, 8, 8), torch.randn(2, 16, 4, 4))
    (hr_out + lr_out).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_state_dict_round_trip():
    layer = perturbed(FreqFusion(16, 24, compressed_channels=16, feature_resample=True))
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    clone = FreqFusion(16, 24, compressed_channels=16, feature_resample=True)
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    assert clone.hamming_lowpass.shape == (1, 1, 5, 5) and clone.hamming_lowpass.dtype == torch.float32
    hr, lr = torch.randn(1, 16, 8, 8), torch.randn(1, 24, 4, 4)
    for a, b in zip(clone(hr, lr), layer(hr, lr), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"compressed_channels": 12, "feature_resample": True}, "GroupNorm"),
        ({"compressed_channels": 16, "feature_resample": True, "feature_resample_group": 3}, "feature_resample_group"),
        ({"up_group": 3}, "up_group"),
        ({"scale_factor": 2}, "scale_factor"),
        ({"lowpass_kernel": 4}, "odd"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FreqFusion(16, 24, **kwargs)


@pytest.mark.parametrize(
    "hr,lr,match",
    [
        (torch.randn(1, 16, 16, 16), torch.randn(1, 24, 4, 4), "not 2x"),
        (torch.randn(1, 8, 16, 16), torch.randn(1, 24, 8, 8), "expected 16 input channels"),
        (torch.randn(2, 16, 16, 16), torch.randn(1, 24, 8, 8), "batch sizes differ"),
        (torch.randn(16, 16, 16), torch.randn(1, 24, 8, 8), "4-D"),
    ],
)
def test_bad_input_raises_value_error(hr, lr, match):
    with pytest.raises(ValueError, match=match):
        FreqFusion(16, 24, compressed_channels=16)(hr, lr)


def test_half_precision_and_channels_last():
    layer = perturbed(FreqFusion(16, 16, compressed_channels=16, feature_resample=True), scale=0.05).eval()
    hr, lr = torch.randn(1, 16, 12, 12), torch.randn(1, 16, 6, 6)
    ref = layer(hr, lr)
    out = layer.to(memory_format=torch.channels_last)(
        hr.to(memory_format=torch.channels_last), lr.to(memory_format=torch.channels_last)
    )
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    bf = layer.to(torch.bfloat16)(hr.bfloat16(), lr.bfloat16())
    for a, b in zip(bf, ref, strict=True):
        assert a.dtype == torch.bfloat16
        torch.testing.assert_close(a.float(), b, rtol=0.02, atol=0.02 * b.abs().max().item())
