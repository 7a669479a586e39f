import math

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from freqdyn import DynamicConv2d, FDConv, FreqFusion, ODConv2d, profile
from freqdyn.layers.fdconv.low_pass import band_masks


def _plain_count(model, *inputs):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops()


def _conv_count(model, *inputs):
    """FlopCounterMode's FLOPs of the convolutions alone."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return sum(v for op, v in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))


def test_dyconv_flops_match_the_formula():
    b, i, o, k, h, w, experts = 2, 8, 12, 3, 10, 9, 4
    layer = DynamicConv2d(i, o, k, padding=1, num_experts=experts)
    hidden = layer.attention.fc1.out_channels
    macs = b * (i * hidden + hidden * experts)  # attention
    macs += b * experts * (o * i * k * k) + b * experts * o  # kernel and bias mixing
    macs += b * o * h * w * i * k * k  # the convolution
    result = profile(layer, (b, i, h, w))
    assert result.flops == 2 * macs
    assert result.layers[0].params == sum(p.numel() for p in layer.parameters())


class _FFTs(nn.Module):
    def forward(self, x):
        return torch.fft.irfft2(torch.fft.rfft2(x), s=x.shape[-2:]) + torch.fft.ifft2(x.to(torch.complex64)).real


def test_fft_formulas():
    x_shape = (2, 3, 8, 16)
    n, signals = 8 * 16, 6
    expected = signals * (2 * 2.5 * n * math.log2(n) + 5 * n * math.log2(n))
    assert profile(_FFTs(), x_shape).flops == int(signals * 2.5 * n * math.log2(n)) * 2 + int(
        signals * 5 * n * math.log2(n)
    )
    assert abs(profile(_FFTs(), x_shape).flops - expected) <= 3


def test_fdconv_adds_its_fft_synthesis_and_fbm_ffts_and_equals_flopcounter_elsewhere():
    x = torch.randn(2, 32, 16, 16)
    fft = FDConv(32, 32, 3, padding=1, kernel_num=8, synthesis="fft").eval()
    rows, cols = fft.spectrum_shape
    synthesis = profile(fft, tuple(x.shape)).flops - _plain_count(fft, x)
    n = rows * cols
    assert synthesis >= int(2 * 2.5 * n * math.log2(n))  # at least one inverse FFT per sample
    basis = FDConv(32, 32, 3, padding=1, kernel_num=8, synthesis="basis").eval()
    # FBM's batched pruned FFTs (B * C = 64 signals of 16 x 16, 3 bands): one 2-D real FFT, then per band the
    # inverse FFT along H of the kept columns (5 at 16 px: the k = 2 band's) and an inverse real FFT along W
    kept = int(band_masks(16, 16, (2, 4, 8), "official")[1].sum(1).max())
    per_signal = 16 * math.log2(16)
    fbm_ffts = 64 * 2.5 * 256 * math.log2(256) + 64 * kept * 5 * per_signal * 3 + 3 * 64 * 16 * 2.5 * per_signal
    # the basis of the K = 8 group kernels is synthesised from the current weights at every call
    basis_fft = int(8 * 2.5 * n * math.log2(n))
    assert profile(basis, tuple(x.shape)).flops == _plain_count(basis, x) + int(fbm_ffts) + basis_fft


def test_freqfusion_adds_every_reassembly():
    b, c, comp, hh, ww = 1, 16, 8, 12, 10
    layer = FreqFusion(c, c, compressed_channels=comp)
    hr, lr = torch.randn(b, c, hh, ww), torch.randn(b, c, hh // 2, ww // 2)
    pixels = b * hh * ww
    reassembly_macs = pixels * (comp * 9 + 25 * 25 + 9 * 25 + c * 25 + c * 9)
    # the convolutions as FlopCounterMode counts them, and exactly 2 k*k FLOPs per reassembled output element
    assert profile(layer, [tuple(hr.shape), tuple(lr.shape)]).flops - _conv_count(layer, hr, lr) == 2 * reassembly_macs


def test_model_breakdown_and_plain_models():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18().eval()
    x_shape = (1, 3, 64, 64)
    plain = profile(model, x_shape)
    assert plain.layers == [] and plain.flops == _plain_count(model, torch.randn(x_shape))
    model.layer4[0].conv1 = ODConv2d.from_conv(model.layer4[0].conv1)
    converted = profile(model, x_shape)
    assert [c.name for c in converted.layers] == ["layer4.0.conv1"] and converted.flops > plain.flops
    assert "layer4.0.conv1" in str(converted)


def test_bottleneck_pattern_finds_a_detectors_backbone_convs():
    """``freqdyn profile/analyze --model fasterrcnn_resnet50_fpn`` select the bottleneck convs inside the detector
    (``backbone.body.layer1.0.conv1``), as in a plain ResNet-50: 48 layers."""
    torchvision = pytest.importorskip("torchvision")
    from freqdyn import convert
    from freqdyn.tools.overhead import BOTTLENECK_CONVS

    model = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    report = convert(model, "dyconv", include=BOTTLENECK_CONVS)
    assert len(report.replaced) == 48 and all(name.startswith("backbone.body.layer") for name in report.replaced)
