"""Bad arguments fail early with a ValueError naming them; valid numpy integers work; autocast dtypes follow
nn.Conv2d."""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from freqdyn import CondConv2d, DynamicConv2d, FDConv, FDLinear, FreqFusion, FreqFusionFPN, ODConv2d

BAD = [
    (lambda: FDConv(32, 32, 3, kernel_temp=0), "kernel_temp"),
    (lambda: FDConv(32, 32, 3, temp=0.0), "temp"),
    (lambda: FDConv(32, 32, 3, kernel_num=2.5), "kernel_num"),
    (lambda: FDConv(32, 32, 3, param_ratio=2.5), "param_ratio"),
    (lambda: FDConv(32, 32, 3, att_multi=float("nan")), "att_multi"),
    (lambda: FDConv(32.0, 32, 3), "in_channels"),
    (lambda: FDLinear(32, 0), "out_features"),
    (lambda: DynamicConv2d(32, 32, 3, ratio=-1), "ratio"),
    (lambda: DynamicConv2d(32, 32, 3, temperature=0), "temperature"),
    (lambda: ODConv2d(32, 32, 3, reduction=0, min_hidden=0), "reduction"),
    (lambda: CondConv2d(32, 32, 3, num_experts=1.5), "num_experts"),
    (lambda: FreqFusion(16, 16, encoder_kernel=2), "encoder_kernel"),
    (lambda: FreqFusion(16, 16, encoder_kernel=0), "encoder_kernel"),
    (lambda: FreqFusion(16, 18, feature_resample=True), "feature_resample_group"),
    (lambda: FreqFusionFPN([8, 16], 7), "out_channels"),
    (lambda: FreqFusionFPN([8, 16], 16)([torch.zeros(1, 8, 8, 8, dtype=torch.long),
                                         torch.zeros(1, 16, 4, 4, dtype=torch.long)]), "floating-point"),
]


@pytest.mark.parametrize("build,name", BAD, ids=[name for _, name in BAD])
def test_bad_arguments_raise_a_value_error_naming_them(build, name):
    with pytest.raises(ValueError, match=name):
        build()


@pytest.mark.parametrize("cls", [FDConv, DynamicConv2d, CondConv2d, ODConv2d])
def test_numpy_integer_conv_converts(cls):
    conv = nn.Conv2d(np.int64(24), np.int64(32), np.int64(3), padding=np.int64(1))
    layer = cls.from_conv(conv)
    assert type(layer.in_channels) is int and layer.kernel_size == (3, 3)
    x = torch.randn(2, 24, 6, 6)
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [FDConv, DynamicConv2d, CondConv2d, ODConv2d])
@pytest.mark.parametrize("bias", [True, False])
def test_autocast_output_dtype_follows_conv2d(cls, bias):
    conv = nn.Conv2d(24, 32, 3, padding=1, bias=bias)
    layer = cls.from_conv(conv)
    x = torch.randn(2, 24, 9, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, out = conv(x), layer(x)
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected.float(), rtol=0.05, atol=0.05)


HALF_LAYERS = {
    "fdconv": (lambda: FDConv(32, 32, 3, padding=1, kernel_num=8), (2, 32, 9, 9)),
    "fdconv-feature": (lambda: FDConv(32, 32, 3, padding=1, kernel_num=8, aggregation="feature"), (2, 32, 9, 9)),
    "fdconv-layer-norm": (lambda: FDConv(32, 32, 3, padding=1, kernel_num=8, attention_norm="layer"), (2, 32, 9, 9)),
    "fdlinear": (lambda: FDLinear(32, 48, kernel_num=8), (2, 5, 32)),
    "odconv": (lambda: ODConv2d(32, 32, 3, padding=1), (2, 32, 9, 9)),
    "dyconv": (lambda: DynamicConv2d(32, 32, 3, padding=1), (2, 32, 9, 9)),
    "condconv": (lambda: CondConv2d(32, 32, 3, padding=1), (2, 32, 9, 9)),
}


@pytest.mark.parametrize("name", sorted(HALF_LAYERS))
@pytest.mark.parametrize("dtype,tol", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("scale", [1.0, 64.0, 1024.0])
@pytest.mark.parametrize("training", [False, True])
def test_half_precision_stays_finite_at_large_inputs(name, dtype, tol, scale, training):
    """FDConv's StarReLU squares its trunk's pre-activation: the attentions run in float32 for half dtypes, so a
    half layer computes what a float32 layer with the same (rounded) parameters computes, where the output fits."""
    from helpers import perturb_

    build, shape = HALF_LAYERS[name]
    half = perturb_(build(), scale=0.3).to(dtype).train(training)
    wide = copy.deepcopy(half).float()
    x = (torch.randn(shape) * scale).to(dtype)
    out, ref = half(x), wide(x.float())
    assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol * ref.abs().max().item())
