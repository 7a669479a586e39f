"""torch.func transforms: vmap, model ensembles, grad and jacrev agree with loops and autograd."""

import copy

import pytest
import torch
from torch.func import functional_call, grad, jacrev, stack_module_state, vmap

from freqdyn import FDConv, FreqFusion, ODConv2d
from helpers import perturb_
from zoo import ZOO

# the zoo's dynamic layers: per-sample kernels and attention statistics are what a transform could get wrong
TRANSFORMED = ["fdconv", "fdconv-stride-feature", "fdlinear", "odconv", "dyconv", "condconv", "kw"]
NORMED = {"fdconv": FDConv, "odconv": ODConv2d}  # attentions with a BatchNorm, which vmap and grad must not update


@pytest.mark.parametrize("kind", TRANSFORMED)
@pytest.mark.parametrize("no_grad", [False, True])
def test_vmap_equals_a_loop(kind, no_grad):
    build, inputs = ZOO[kind]
    layer = perturb_(build(), seed=1).eval()
    x = torch.stack([inputs()[0] for _ in range(3)])
    with torch.set_grad_enabled(not no_grad):
        out = vmap(layer)(x)
        loop = torch.stack([layer(xi) for xi in x])
    torch.testing.assert_close(out, loop, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", TRANSFORMED)
def test_vmap_over_a_stacked_ensemble_equals_each_model(kind):
    build, inputs = ZOO[kind]
    models = [perturb_(build(), seed=s).eval() for s in range(3)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    (x,) = inputs()
    out = vmap(lambda p, b: functional_call(base, (p, b), (x,)))(params, buffers)
    torch.testing.assert_close(out, torch.stack([m(x) for m in models]), rtol=1e-5, atol=1e-5)


def test_vmap_of_a_training_batchnorm_names_the_fix():
    layer = FDConv(24, 24, 3, padding=1, kernel_num=4).train()
    with pytest.raises(ValueError, match="attention_norm='frozen' or 'layer'"):
        vmap(layer)(torch.randn(3, 2, 24, 6, 6))
    layer = perturb_(FDConv(24, 24, 3, padding=1, kernel_num=4, attention_norm="layer"), seed=3).train()
    x = torch.randn(3, 2, 24, 6, 6)
    torch.testing.assert_close(vmap(layer)(x), torch.stack([layer(xi) for xi in x]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["fdconv", "odconv"])
@pytest.mark.parametrize("norm", ["frozen", "layer"])
def test_func_grad_equals_autograd_in_training(kind, norm):
    layer = perturb_(NORMED[kind](24, 24, 3, padding=1, attention_norm=norm), seed=4).train()
    x = torch.randn(3, 24, 6, 6)
    params = {n: p.detach() for n, p in layer.named_parameters()}
    grads = grad(lambda p: functional_call(layer, p, (x,)).square().sum())(params)
    layer(x).square().sum().backward()
    for n, p in layer.named_parameters():
        # two float32 computations in different orders (FDConv's training Function, the plain ops under torch.func):
        # their rounding is relative to the gradient's scale, not to each element's
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-5 * max(1.0, float(p.grad.abs().max())))


@pytest.mark.parametrize("kind", ["fdconv", "odconv"])
def test_func_grad_of_a_training_batchnorm_names_the_fix(kind):
    layer = NORMED[kind](24, 24, 3, padding=1).train()
    params = {n: p.detach() for n, p in layer.named_parameters()}
    with pytest.raises(ValueError, match="attention_norm='frozen' or 'layer'"):
        grad(lambda p: functional_call(layer, p, (torch.randn(3, 24, 6, 6),)).sum())(params)


def test_vmap_over_a_training_ensemble_updates_each_models_statistics():
    models = [perturb_(ODConv2d(24, 24, 3, padding=1), seed=s).train() for s in range(3)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    x = torch.randn(4, 24, 6, 7)
    out = vmap(lambda p, b: functional_call(base, (p, b), (x,)))(params, buffers)
    torch.testing.assert_close(out, torch.stack([m(x) for m in models]), rtol=1e-5, atol=1e-5)
    for i, m in enumerate(models):
        torch.testing.assert_close(buffers["attention.bn.running_mean"][i], m.attention.bn.running_mean)


def test_jacrev_of_fdconv_equals_autograd_rows():
    layer = perturb_(FDConv(24, 24, 3, padding=1, kernel_num=4), seed=5).eval()
    x = torch.randn(1, 24, 5, 5)
    jac = jacrev(lambda inp: layer(inp).sum(dim=(2, 3)))(x)  # (1, 24, 1, 24, 5, 5)
    for o in (0, 11):
        xi = x.clone().requires_grad_()
        layer(xi).sum(dim=(2, 3))[0, o].backward()
        torch.testing.assert_close(jac[0, o], xi.grad, rtol=1e-4, atol=1e-5)


def test_freqfusion_under_vmap_and_grad():
    ff = perturb_(FreqFusion(16, 16), seed=6).double().eval()  # float64: the unfold and looped CARAFE round alike
    hr, lr = torch.randn(2, 1, 16, 8, 8, dtype=torch.float64), torch.randn(2, 1, 16, 4, 4, dtype=torch.float64)
    out = vmap(ff)(hr, lr)
    for i in range(2):
        for got, want in zip(out, ff(hr[i], lr[i]), strict=True):
            torch.testing.assert_close(got[i], want)
    params = {n: p.detach() for n, p in ff.named_parameters()}

    def loss(p):
        return sum(o.square().sum() for o in functional_call(ff, p, (hr[0], lr[0])))

    grads = grad(loss)(params)
    sum(o.square().sum() for o in ff(hr[0], lr[0])).backward()
    for n, p in ff.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-5)


def test_every_public_layer_is_transformed_or_opted_out():
    from helpers import assert_covered

    assert_covered(
        {type(ZOO[kind].build()).__name__ for kind in TRANSFORMED} | {"FreqFusion"},
        {
            "FDLinearQwen": "FDLinear's synthesis and attention code",
            "FreqFusionFPN": "FreqFusion (tested) plus plain convs",
            "MRFA": "no in-place work, no buffers written: plain torch ops",
            "UniConvNetBlock": "MRFA plus plain layers",
            "UniConvNet": "its blocks",
            "DCNv3": "grid_sample",
            "FrequencyBandModulation": "inside FDConv (fdconv rows)",
            "StarReLU": "elementwise",
            "DropPath": "elementwise",
            "LayerNorm2d": "nn.LayerNorm",
            "KWConv1d": "KWConv2d's code with F.conv1d",
            "KWConv3d": "KWConv2d's code with F.conv3d",
            "KWLinear": "a KWConv1d",
            "WarehouseManager": "holds the cells (the kw row's)",
        },
    )
