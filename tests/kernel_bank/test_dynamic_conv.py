import copy
import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from freqdyn import CondConv2d, DynamicConv2d, FDConv, ODConv2d, TemperatureSchedule, set_temperature
from freqdyn.tools.reference import naive_expert_conv
from helpers import CONV_CASES, IDS, gradcheck_module, make_conv, make_input, perturb_

CLASSES = [DynamicConv2d, CondConv2d, ODConv2d]
NAMES = ["dyconv", "condconv", "odconv"]


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
@pytest.mark.parametrize("training", [False, True])
def test_from_conv_equals_conv(cls, case, training, device):
    conv = make_conv(case).to(device).train(training)
    layer = cls.from_conv(conv, num_experts=3)
    assert layer.training == training
    x = make_input(case).to(device)
    torch.testing.assert_close(layer(x), conv(x), rtol=0, atol=2e-5)


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
def test_batched_path_matches_naive_per_sample_reference(cls, case, device):
    i, o, k, s, p, d, g, b, mode, _, _ = case
    layer = perturb_(cls(i, o, k, s, p, d, g, b, mode, num_experts=3)).to(device)
    x = make_input(case, batch=4).to(device)
    for training in (True, False):
        layer.train(training)
        torch.testing.assert_close(layer(x), naive_expert_conv(layer, x), rtol=1e-4, atol=1e-5)


def test_one_expert_dyconv_is_a_plain_conv_whatever_the_attention():
    layer = perturb_(DynamicConv2d(16, 24, 3, stride=2, padding=1, num_experts=1, temperature=1.0))
    x = torch.randn(3, 16, 9, 9)
    ref = F.conv2d(x, layer.kernels()[0], layer.bias[0], 2, 1)
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-6)


def test_one_expert_condconv_is_a_routed_conv():
    layer = perturb_(CondConv2d(16, 24, 3, padding=1, num_experts=1))
    x = torch.randn(3, 16, 7, 7)
    route = torch.sigmoid(x.mean((2, 3)) @ layer.attention.routing.weight.t() + layer.attention.routing.bias)
    ref = route[:, :, None, None] * F.conv2d(x, layer.kernels()[0], layer.bias[0], 1, 1)
    torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-6)


def test_one_expert_pointwise_odconv_has_no_kernel_or_spatial_head():
    layer = ODConv2d(32, 32, 1, num_experts=1)
    assert layer.attention.kernel_fc is None and layer.attention.spatial_fc is None
    depthwise = ODConv2d(32, 32, 3, groups=32)
    assert depthwise.attention.filter_fc is None


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
@pytest.mark.parametrize("groups,training", [(1, True), (2, False)])
def test_gradcheck(cls, groups, training):
    layer = perturb_(cls(4, 6, 3, padding=1, groups=groups, num_experts=3, dtype=torch.float64)).train(training)
    if isinstance(layer, DynamicConv2d):
        layer.set_temperature(2.0)
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    assert gradcheck_module(layer, x)


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
def test_converted_conv_breaks_expert_symmetry_and_every_parameter_learns(cls):
    layer = cls.from_conv(nn.Conv2d(16, 32, 3, padding=1), num_experts=4)
    if isinstance(layer, DynamicConv2d):
        layer.set_temperature(1.0)  # at T=30 the attention moves below float32 resolution in two steps
    kernels = layer.kernels().detach()
    assert not torch.allclose(kernels[0], kernels[1])  # identical experts would never separate
    x = torch.randn(4, 16, 8, 8)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.05)
    for _ in range(2):
        optimizer.zero_grad()
        layer(x).square().mean().backward()
        optimizer.step()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert layer.weight.grad[0].sub(layer.weight.grad[1]).abs().max() > 0


def test_expert_noise_zero_gives_identical_kernels():
    layer = DynamicConv2d.from_conv(nn.Conv2d(16, 32, 3), num_experts=3, expert_noise=0.0)
    torch.testing.assert_close(layer.kernels()[0], layer.kernels()[2], rtol=0, atol=0)


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
def test_state_dict_round_trip_and_weights_only_load(cls):
    layer = perturb_(cls(16, 24, 3, padding=1, num_experts=3)).eval()
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    clone = cls(16, 24, 3, padding=1, num_experts=3).eval()
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(clone(x), layer(x), rtol=0, atol=0)


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
def test_reference_5d_kernel_bank_loads(cls):
    layer = perturb_(cls(16, 24, 3, padding=1, num_experts=3)).eval()
    state = layer.state_dict()
    state["weight"] = layer.kernels().detach().clone()  # (K, O, I, k, k) as the reference implementations store it
    clone = cls(16, 24, 3, padding=1, num_experts=3).eval()
    clone.load_state_dict(state)
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(clone(x), layer(x), rtol=0, atol=0)


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
def test_batch_of_one_trains(cls):
    layer = perturb_(cls(16, 24, 3, padding=1)).train()
    x = torch.randn(1, 16, 5, 5)
    layer(x).sum().backward()
    assert layer.weight.grad is not None


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.randn(2, 8, 5, 5), "expected 16 input channels"),
        (torch.randn(16, 5, 5), "4-D"),
        (torch.ones(2, 16, 5, 5, dtype=torch.long), "floating-point"),
    ],
)
def test_bad_input_raises_value_error(cls, bad, match):
    with pytest.raises(ValueError, match=match):
        cls(16, 24, 3)(bad)


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_experts": 0}, "num_experts"),
        ({"groups": 5}, "groups"),
        ({"padding": "full"}, "padding"),
        ({"stride": 0}, "positive"),
    ],
)
def test_bad_arguments_raise_value_error(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(16, 24, 3, **kwargs)


@pytest.mark.parametrize("cls", [DynamicConv2d, ODConv2d], ids=["dyconv", "odconv"])
def test_non_positive_temperature_is_rejected(cls):
    with pytest.raises(ValueError, match="temperature"):
        cls(16, 24, 3, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        cls(16, 24, 3).set_temperature(-1.0)


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
@pytest.mark.parametrize("dtype,tol", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
def test_half_precision_module_keeps_dtype(cls, dtype, tol):
    layer = perturb_(cls(16, 24, 3, padding=1)).eval()
    x = torch.randn(2, 16, 7, 9)
    ref = layer(x)
    out = layer.to(dtype)(x.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol * ref.abs().max().item())


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
def test_channels_last_model_and_input(cls):
    layer = perturb_(cls(16, 24, 3, padding=1)).eval()
    x = torch.randn(2, 16, 7, 9)
    ref = layer(x)
    layer = layer.to(memory_format=torch.channels_last)
    out = layer(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", CLASSES, ids=NAMES)
def test_reset_parameters_and_repr(cls):
    layer = cls(16, 24, 3, stride=2, padding=1, bias=False, num_experts=2)
    before = layer.weight.detach().clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.weight) and layer.weight.shape == (2, 24 * 16 * 9)
    text = repr(layer)
    assert "16, 24, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False, num_experts=2" in text


def test_temperature_schedule_linear_and_stepped():
    model = nn.Sequential(DynamicConv2d(8, 8, 3), ODConv2d(8, 8, 3), CondConv2d(8, 8, 3), DynamicConv2d(8, 8, 1))
    schedule = TemperatureSchedule(model, start=30.0, end=1.0, epochs=10)
    assert schedule.num_layers == 3 and model[0].temperature == 30.0 and model[1].temperature == 30.0
    values = [schedule.step() for _ in range(12)]
    assert values == pytest.approx([30 - 2.9 * e for e in range(1, 11)] + [1.0, 1.0])
    assert model[3].temperature == 1.0 and model[1].attention.temperature == 1.0
    stepped = TemperatureSchedule(model, start=34.0, end=1.0, step_size=3.0)
    assert [stepped.step() for _ in range(12)] == [31, 28, 25, 22, 19, 16, 13, 10, 7, 4, 1, 1]
    resumed = TemperatureSchedule(model, start=34.0, step_size=3.0)
    resumed.load_state_dict({"epoch": 5})
    assert model[0].temperature == 19.0
    assert set_temperature(model, 2.5) == 3 and model[3].temperature == 2.5
    with pytest.raises(ValueError, match="must be >= end"):
        TemperatureSchedule(model, start=0.5, end=1.0)


def test_temperature_sharpens_the_attention():
    layer = perturb_(DynamicConv2d(16, 16, 3, num_experts=4))
    pooled = torch.randn(2, 16)
    soft = layer.attention(pooled).kernel
    layer.set_temperature(1.0)
    sharp = layer.attention(pooled).kernel
    torch.testing.assert_close(soft.sum(1), torch.ones(2))
    assert (sharp.max(1).values > soft.max(1).values).all()


LAYOUT_KINDS = {
    "fdconv": lambda c: FDConv.from_conv(c, kernel_num=4),
    "fdconv-feature": lambda c: FDConv.from_conv(c, kernel_num=4, aggregation="feature"),
    "dyconv": DynamicConv2d.from_conv,
    "condconv": CondConv2d.from_conv,
    "odconv": ODConv2d.from_conv,
}


def _layout(t: torch.Tensor) -> tuple[bool, bool]:
    return t.is_contiguous(), t.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("kind", sorted(LAYOUT_KINDS))
@pytest.mark.parametrize("module_cl", [False, True])
@pytest.mark.parametrize("input_cl", [False, True])
def test_output_memory_format_follows_conv2d(kind, module_cl, input_cl):
    """nn.Conv2d returns channels-last when its (padded) input is channels-last or when the module was converted to
    channels-last (its weight's strides); every case, padding mode and batch size here does the same."""
    for case in CONV_CASES:
        conv = make_conv(case).eval()
        layer = LAYOUT_KINDS[kind](conv).eval()
        reference = copy.deepcopy(layer)
        if module_cl:
            conv, layer = conv.to(memory_format=torch.channels_last), layer.to(memory_format=torch.channels_last)
        for batch in (1, 2):
            x = torch.randn(batch, case[0], case[9], case[10])
            if input_cl:
                x = x.to(memory_format=torch.channels_last)
            with torch.no_grad():
                out, expected = layer(x), conv(x)
                assert _layout(out) == _layout(expected), (case, batch)
                torch.testing.assert_close(out, reference(x.contiguous()), rtol=1e-5, atol=1e-5)


def test_channels_last_conversion_survives_dtype_copies_and_reversal():
    import pickle

    layer = FDConv(24, 32, 3, padding=1, kernel_num=4).to(memory_format=torch.channels_last)
    x = torch.randn(2, 24, 7, 7)
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer)), copy.deepcopy(layer).double()):
        assert other(x.to(next(other.parameters()).dtype)).is_contiguous(memory_format=torch.channels_last)
    assert layer.to(memory_format=torch.contiguous_format)(x).is_contiguous()
