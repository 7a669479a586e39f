"""Bad arguments fail early with a ValueError naming them; valid numpy integers work; autocast dtypes follow
nn.Conv2d."""

import copy
import inspect
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from freqdyn import (
    MRFA,
    CondConv2d,
    DCNv3,
    DropPath,
    DynamicConv2d,
    FDConv,
    FDLinear,
    FDLinearQwen,
    FreqFusion,
    FreqFusionFPN,
    FrequencyBandModulation,
    ODConv2d,
    StarReLU,
    TemperatureSchedule,
    UniConvNetBlock,
    WarehouseManager,
)
from zoo import ZOO

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
    (
        lambda: FreqFusionFPN([8, 16], 16)(
            [torch.zeros(1, 8, 8, 8, dtype=torch.long), torch.zeros(1, 16, 4, 4, dtype=torch.long)]
        ),
        "floating-point",
    ),
    (lambda: FDConv(32, 32, 2.5), "kernel_size"),
    (lambda: FDConv(32, 32, 3, reduction="0.1"), "reduction"),
    (lambda: FDConv(32, 32, 3, reduction=math.nan), "reduction"),
    (lambda: FDLinear(32, 32, reduction=math.inf), "reduction"),
    (lambda: DynamicConv2d(32, 32, 3, ratio=math.inf), "ratio"),
    (lambda: ODConv2d(32, 32, 3, min_hidden=2.5), "min_hidden"),
    (lambda: FDConv(32, 32, 3, fbm_k_list=None), "fbm_k_list"),
    (lambda: FDConv(32, 32, 3, fbm_spatial_group=math.inf), "fbm_spatial_group"),
    (lambda: FreqFusionFPN([8, 16], 16)(torch.zeros(2, 8, 8, 8)), "list / tuple or a dict"),
    (lambda: UniConvNetBlock(16, layer_scale_init=math.nan), "layer_scale_init"),
    (lambda: UniConvNetBlock(16, drop_path=1.5), "drop_path"),
    (lambda: StarReLU(scale_learnable=2.5), "scale_learnable"),
    (lambda: MRFA(16, kernel_sizes=7), "kernel_sizes"),
    (lambda: FreqFusion(True, 16), "hr_channels"),
    (lambda: TemperatureSchedule(nn.Sequential(), start="30"), "start"),
    (lambda: TemperatureSchedule(nn.Sequential(), end=0), "end"),
    (lambda: TemperatureSchedule(nn.Sequential(), end=-1.0), "end"),
    (lambda: FreqFusionFPN([8, 16], 16, num_outs=10**12), "num_outs"),
    (lambda: FreqFusionFPN([8, 16], 16, num_outs=19), "num_outs"),
    (lambda: FDConv(32, 32, 3, att_multi=1e12), "att_multi"),
    (lambda: FDLinear(32, 32, att_multi=16.5), "att_multi"),
    (lambda: FDLinearQwen(32, 32, att_multi=1e12), "att_multi"),
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


HALF_LAYERS = ["fdconv", "fdconv-stride-feature", "fdconv-layer-norm", "fdlinear", "odconv", "dyconv", "condconv"]


@pytest.mark.parametrize("name", HALF_LAYERS)
@pytest.mark.parametrize("dtype,tol", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("scale", [1.0, 64.0, 1024.0])
@pytest.mark.parametrize("training", [False, True])
def test_half_precision_stays_finite_at_large_inputs(name, dtype, tol, scale, training):
    """FDConv's StarReLU squares its trunk's pre-activation: the attentions run in float32 for half dtypes, so a
    half layer computes what a float32 layer with the same (rounded) parameters computes, where the output fits."""
    from helpers import perturb_

    build, inputs = ZOO[name]
    half = perturb_(build(), scale=0.3).to(dtype).train(training)
    wide = copy.deepcopy(half).float()
    x = (inputs()[0] * scale).to(dtype)
    out, ref = half(x), wide(x.float())
    assert out.dtype == dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol * ref.abs().max().item())


@pytest.mark.parametrize("name", HALF_LAYERS)
@pytest.mark.parametrize("training", [False, True])
def test_float32_layers_are_exact_up_to_the_documented_input_range(name, training):
    """docs/fdconv.md, numeric range: a float32 layer computes what a float64 copy computes for inputs up to 1e18
    (the attention trunks square their values; float32 holds squares up to about 1.8e19 ** 2)."""
    from helpers import perturb_

    build, inputs = ZOO[name]
    layer = perturb_(build(), scale=0.3).train(training)
    wide = copy.deepcopy(layer).double()
    x = inputs()[0] * 1e18
    out, ref = layer(x), wide(x.double())
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


CHANNELS_LAST = {"fdlinear", "fdlinear-qwen", "dcnv3"}
ANY_CHANNELS = {"star-relu": "elementwise", "drop-path": "per-sample scaling"}


@pytest.mark.parametrize("name", sorted(set(ZOO) - set(ANY_CHANNELS)))
def test_every_zoo_layer_names_a_wrong_channel_count(name):
    """One channel too many in the first input (the finest level of a pyramid): a ValueError that names the channel
    count expected, never an error from inside torch."""
    build, inputs = ZOO[name]
    layer, args = build(), list(inputs())
    levels = args[0] if isinstance(args[0], list) else args
    shape = list(levels[0].shape)
    shape[-1 if name in CHANNELS_LAST else 1] += 1
    levels[0] = torch.randn(shape)
    channels = shape[-1 if name in CHANNELS_LAST else 1] - 1
    with pytest.raises(ValueError, match=rf"expect.*\b{channels}\b"):
        layer(*args)


def test_the_pyramid_takes_its_largest_num_outs():
    from freqdyn.layers.freqfusion.fpn import MAX_EXTRA_LEVELS

    fpn = FreqFusionFPN([8, 16], 16, num_outs=2 + MAX_EXTRA_LEVELS)
    outs = fpn([torch.randn(1, 8, 8, 8), torch.randn(1, 16, 4, 4)])
    assert len(outs) == 2 + MAX_EXTRA_LEVELS and outs[-1].shape[-2:] == (1, 1)


# every constructor argument but the flags (which follow truthiness, as nn.Conv2d's ``bias``)
SWEEP = {
    FDConv: (32, 32, 3),
    FDLinear: (32, 32),
    FDLinearQwen: (32, 32),
    DynamicConv2d: (32, 32, 3),
    CondConv2d: (32, 32, 3),
    ODConv2d: (32, 32, 3),
    FreqFusion: (32, 32),
    FreqFusionFPN: ([16, 32], 32),
    MRFA: (16,),
    UniConvNetBlock: (16,),
    DCNv3: (16,),
    FrequencyBandModulation: (16,),
    StarReLU: (),
    DropPath: (),
    WarehouseManager: (),
}
FLAGS = {
    "bias",
    "use_ksm_local",
    "recompute_kernels",
    "use_fbm_for_stride",
    "align_corners",
    "feature_resample",
    "comp_feat_upsample",
    "use_high_pass",
    "use_low_pass",
    "hr_residual",
    "semi_conv",
    "hamming_window",
    "feature_resample_norm",
    "relu_before_extra_convs",
    "device",
    "dtype",
    "extra_blocks",
    "init_cfg",
    "sharing_range",
}  # any string is a sharing range (the authors iterate its characters)
SWEPT = [
    (cls, name)
    for cls in SWEEP
    for name, p in inspect.signature(cls).parameters.items()
    if name not in FLAGS and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
]


@pytest.mark.parametrize("bad", ["3", object(), math.nan, math.inf], ids=["str", "object", "nan", "inf"])
@pytest.mark.parametrize("cls,name", SWEPT, ids=[f"{c.__name__}-{n}" for c, n in SWEPT])
def test_every_bad_argument_raises_an_error_naming_it(cls, name, bad):
    """A wrong type is a TypeError (and, for code written against earlier versions, a ValueError); a bad value a
    ValueError; both name the argument: never an error from deep inside torch or Python."""
    parameters = inspect.signature(cls).parameters
    names = [n for n in parameters if n not in FLAGS]
    kwargs = dict(zip(names, SWEEP[cls], strict=False)) | {name: bad}
    with pytest.raises((TypeError, ValueError), match=name) as error:
        cls(**kwargs)
    default = dict(zip(names, SWEEP[cls], strict=False)).get(name, parameters[name].default)
    takes_strings = isinstance(default, str | bool) or name == "padding"  # options: a ValueError, as torch's
    if not isinstance(bad, float) and not takes_strings:  # a string or an object for a number: a wrong type
        assert isinstance(error.value, TypeError) and isinstance(error.value, ValueError)


def test_every_public_layer_is_swept_or_opted_out():
    from helpers import assert_covered

    assert_covered(
        {cls.__name__ for cls in SWEEP},
        {
            "UniConvNet": "its arguments go to the blocks (swept) and scale_args (test_uniconvnet.py)",
            "LayerNorm2d": "nn.LayerNorm's own checks",
            "KWConv1d": "built by WarehouseManager.reserve; shapes checked there and in store() "
            "(test_kernel_warehouse.py)",
            "KWConv2d": "built by WarehouseManager.reserve (swept); see test_kernel_warehouse.py",
            "KWConv3d": "built by WarehouseManager.reserve (swept); see test_kernel_warehouse.py",
            "KWLinear": "built by WarehouseManager.reserve (swept); see test_kernel_warehouse.py",
        },
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda: FDConv.from_conv(nn.Linear(32, 32)),
        lambda: DynamicConv2d.from_conv(nn.Linear(32, 32)),
        lambda: FDLinear.from_linear(nn.Conv2d(32, 32, 1)),
        lambda: FDConv(32, 32, 3)(torch.zeros(1, 32, 4, 4, dtype=torch.long)),
        lambda: FreqFusionFPN([8, 16], 16)(torch.zeros(2, 8, 8, 8)),
    ],
    ids=["fdconv-from-linear", "dyconv-from-linear", "fdlinear-from-conv", "integer-input", "fpn-one-tensor"],
)
def test_a_wrong_type_raises_a_type_error(build):
    with pytest.raises(TypeError):
        build()
