"""attention_norm ('batch', 'frozen', 'layer') of FDConv and ODConv, against the formulas; NaN isolation."""

import pytest
import torch

from freqdyn import FDConv, ODConv2d
from freqdyn.tools.reference import naive_expert_conv, naive_fdconv
from helpers import perturb_

NORMS = ["batch", "frozen", "layer"]
LAYERS = {
    "fdconv": (lambda norm: FDConv(24, 32, 3, padding=1, kernel_num=4, attention_norm=norm), naive_fdconv),
    "odconv": (lambda norm: ODConv2d(24, 32, 3, padding=1, attention_norm=norm), naive_expert_conv),
}


def _norm(layer):
    return layer.KSM_Global.bn if isinstance(layer, FDConv) else layer.attention.bn


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("training", [False, True])
def test_matches_the_formulas(kind, norm, training):
    build, naive = LAYERS[kind]
    layer = perturb_(build(norm), seed=3).train(training)
    x = torch.randn(4, 24, 7, 9)
    expected = naive(layer, x)
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", LAYERS)
@pytest.mark.parametrize("norm", ["frozen", "layer"])
def test_batch_independent_norms_give_each_sample_its_own_output_in_training(kind, norm):
    layer = perturb_(LAYERS[kind][0](norm), seed=4).train()
    x = torch.randn(5, 24, 6, 6)
    loop = torch.cat([layer(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(layer(x), loop, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", LAYERS)
def test_frozen_keeps_its_statistics_and_shares_the_batch_state_dict(kind):
    build = LAYERS[kind][0]
    trained = perturb_(build("batch"), seed=5)
    frozen = build("frozen")
    frozen.load_state_dict(trained.state_dict(), strict=True)
    before = {k: v.clone() for k, v in _norm(frozen).state_dict().items()}
    frozen.train()(torch.randn(4, 24, 6, 6)).sum().backward()
    for k, v in _norm(frozen).state_dict().items():
        assert torch.equal(v, before[k]), k
    assert _norm(frozen).weight.grad is not None  # the affine weights still train


@pytest.mark.parametrize("kind", LAYERS)
def test_layer_norm_has_no_running_statistics(kind):
    keys = set(LAYERS[kind][0]("layer").state_dict())
    assert not any("running" in k or "num_batches" in k for k in keys)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("kind", LAYERS)
def test_a_nan_batch_does_not_poison_the_running_statistics(kind, value):
    layer = perturb_(LAYERS[kind][0]("batch"), seed=6)
    x = torch.randn(3, 24, 6, 6)
    layer.train()(x)
    stats = {k: v.clone() for k, v in _norm(layer).state_dict().items() if "running" in k}
    expected = layer.eval()(x)
    bad = x.clone()
    bad[1, 0, 2, 2] = value
    layer.train()
    assert not torch.isfinite(layer(bad)).all()  # the bad batch itself is not finite, as with nn.BatchNorm2d
    for k, v in _norm(layer).state_dict().items():
        if "running" in k:
            assert torch.equal(v, stats[k]), k
    out = layer.eval()(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_finite_batches_update_statistics_like_batchnorm():
    layer = perturb_(FDConv(24, 32, 3, padding=1, kernel_num=4), seed=7).train()
    bn = torch.nn.BatchNorm2d(_norm(layer).num_features, dtype=torch.float32)
    bn.load_state_dict(_norm(layer).state_dict())
    x = torch.randn(6, 24, 5, 5)
    z = torch.nn.functional.linear(x.mean(dim=(2, 3)), layer.KSM_Global.fc.weight.flatten(1))[:, :, None, None]
    bn.train()(z)
    layer(x)
    for k, v in bn.state_dict().items():
        torch.testing.assert_close(_norm(layer).state_dict()[k], v, rtol=1e-6, atol=1e-7)


def test_unknown_norm_is_a_value_error():
    with pytest.raises(ValueError, match="attention_norm"):
        FDConv(24, 32, 3, attention_norm="instance")
    with pytest.raises(ValueError, match="attention_norm"):
        ODConv2d(24, 32, 3, attention_norm="group")
