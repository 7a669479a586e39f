"""Checkpoints and caches: every layer round-trips exactly, weights loaded from plain layers and other
implementations convert on load, model surgery keeps state, outputs always follow the current weights."""

import copy
import io
import pickle
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from freqdyn import (
    MRFA,
    CondConv2d,
    DynamicConv2d,
    FDConv,
    FDLinear,
    FreqFusion,
    ODConv2d,
    convert,
    gated_fdconv,
)
from freqdyn.tools.reference import naive_fdconv
from helpers import perturb_
from zoo import ZOO

LAYERS = ZOO  # name -> (builder, example inputs); tests/pickles holds the entries the zoo had at 7a37871


def build(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    module = LAYERS[name].build()
    return module


def trained_state(name: str) -> nn.Module:
    """A layer away from its initial state: perturbed attentions and statistics, annealed temperatures."""
    module = perturb_(build(name, 1), seed=3)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    if hasattr(module, "set_temperature"):
        module.set_temperature(7.3)
    module.train()
    for _ in range(2):  # BN running statistics move
        out = module(*LAYERS[name].inputs())
        del out
    return module.eval()


def outputs(module: nn.Module, inputs: tuple) -> list[torch.Tensor]:
    with torch.no_grad():
        out = module(*inputs)
    if isinstance(out, torch.Tensor):
        return [out]
    return list(out.values()) if isinstance(out, dict) else list(out)


@pytest.mark.parametrize("name", list(LAYERS))
def test_round_trip_is_exact(name):
    module = trained_state(name)
    torch.manual_seed(11)
    inputs = LAYERS[name].inputs()
    expected = outputs(module, inputs)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    fresh = build(name, 2)
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    whole = io.BytesIO()
    torch.save(module, whole)
    whole.seek(0)
    copies = {
        "state_dict": fresh.eval(),
        "torch.save(model)": torch.load(whole, weights_only=False),
        "deepcopy": copy.deepcopy(module),
    }
    for how, other in copies.items():
        for a, b in zip(outputs(other, inputs), expected, strict=True):
            assert torch.equal(a, b), how
        if hasattr(module, "temperature"):
            assert other.temperature == module.temperature == torch.tensor(7.3).item(), how


def test_temperature_is_float_state_of_the_module_dtype():
    layer = DynamicConv2d(8, 8, 3, temperature=30.0)
    layer.set_temperature(27.1)  # not representable in float16
    state = copy.deepcopy(layer).half().float().state_dict()  # ultralytics saves the EMA in fp16
    fresh = DynamicConv2d(8, 8, 3, temperature=30.0)
    fresh.load_state_dict(state)
    assert fresh.temperature == torch.tensor(27.1, dtype=torch.float16).item() == 27.09375


def test_older_checkpoints_with_temperature_bits_load_their_temperature():
    import struct

    layer = DynamicConv2d(8, 8, 3, temperature=30.0)
    state = {k: v for k, v in layer.state_dict().items() if k != "attention.temperature"}
    state["temperature_bits"] = torch.tensor(struct.unpack("<q", struct.pack("<d", 2.5))[0])  # freqdyn <= stop 17
    layer.load_state_dict(state, strict=True)
    assert layer.temperature == 2.5


def test_reference_checkpoint_without_temperature_keeps_the_current_one():
    layer = ODConv2d(8, 8, 3, temperature=4.0)
    state = {k: v for k, v in layer.state_dict().items() if k != "attention.temperature"}
    other = ODConv2d(8, 8, 3, temperature=2.0)
    other.load_state_dict(state, strict=True)
    assert other.temperature == 2.0


def test_authors_and_our_gated_checkpoints_load_strictly_through_the_gating_policy():
    """The authors' (and freqdyn's before the policy) gated layers hold a plain conv's weight and bias: a model built
    through gated_fdconv has those keys where the gating says so, and the FDConv keys elsewhere."""

    def build():
        return nn.Sequential(
            gated_fdconv(16, 32, 3, padding=1),
            gated_fdconv(32, 32, 3, padding=1, kernel_num=4),
            gated_fdconv(32, 32, 5, padding=2),
        )

    source = build()
    state = source.state_dict()
    assert {"0.weight", "0.bias", "2.weight", "2.bias", "1.dft_weight"} <= set(state)
    target = build()
    target.load_state_dict(state, strict=True)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(target.eval()(x), source.eval()(x))


# ---- outputs follow the current weights (no weight cache)
def _dynamic_fdconv():
    return perturb_(FDConv(24, 24, 3, padding=1, kernel_num=4, synthesis="basis"), seed=4).eval()


def test_in_place_weight_updates_are_seen_in_eval():
    layer = _dynamic_fdconv()
    x = torch.randn(2, 24, 8, 8)
    with torch.no_grad():
        first = layer(x)
        layer.dft_weight.data.mul_(0.5)  # hand-written EMA
        second = layer(x)
        torch.testing.assert_close(second, naive_fdconv(layer, x), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(first, second)


def test_fused_adamw_steps_in_eval_mode_are_seen():
    layer = _dynamic_fdconv()
    opt = torch.optim.AdamW(layer.parameters(), lr=0.1, fused=True)
    x = torch.randn(2, 24, 8, 8)
    for _ in range(3):
        layer(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            torch.testing.assert_close(layer(x), naive_fdconv(layer, x), rtol=1e-4, atol=1e-4)


def test_functional_call_over_many_weight_sets():
    layer = _dynamic_fdconv()
    x = torch.randn(2, 24, 8, 8)
    sets = []
    for i in range(20):
        gen = torch.Generator().manual_seed(i)
        sets.append({n: p.detach() + 0.1 * torch.randn(p.shape, generator=gen) for n, p in layer.named_parameters()})
    with torch.no_grad():
        got = [torch.func.functional_call(layer, params, (x,)) for params in sets]
    for params, out in zip(sets, got, strict=True):
        copy_ = copy.deepcopy(layer)
        with torch.no_grad():
            for n, p in copy_.named_parameters():
                p.copy_(params[n])
            torch.testing.assert_close(out, naive_fdconv(copy_, x), rtol=1e-4, atol=1e-4)


def test_layer_built_in_inference_mode_runs_and_then_trains():
    with torch.inference_mode():
        layer = FDConv(24, 24, 3, padding=1, kernel_num=4).eval()
        x = torch.randn(2, 24, 11, 9)
        layer(x)
    trained = FDConv(24, 24, 3, padding=1, kernel_num=4)  # the FBM operators were built in inference mode
    trained(torch.randn(2, 24, 11, 9)).sum().backward()


def test_pickles_stay_small_after_eval():
    model = nn.Sequential(*[FDConv(64, 64, 3, padding=1, kernel_num=16, synthesis="basis") for _ in range(2)]).eval()
    before = len(pickle.dumps(model))
    with torch.no_grad():
        model(torch.randn(2, 64, 14, 14))
    assert len(pickle.dumps(model)) == before
    assert len(pickle.dumps(copy.deepcopy(model))) == before


# ---- weights from plain layers and other implementations
@pytest.mark.parametrize(
    "cls,kwargs",
    [(FDConv, dict(kernel_num=8)), (DynamicConv2d, dict(temperature=1.0)), (CondConv2d, {}), (ODConv2d, {})],
)
@pytest.mark.parametrize("bias", [True, False])
def test_plain_conv_weights_convert_on_load(cls, kwargs, bias):
    conv = nn.Conv2d(24, 32, 3, padding=1, bias=bias)
    layer = perturb_(cls(24, 32, 3, padding=1, bias=bias, **kwargs), seed=5)  # not neutral before loading
    result = layer.load_state_dict(conv.state_dict(), strict=False)
    assert not result.unexpected_keys
    x = torch.randn(2, 24, 9, 8)
    for training in (False, True):
        torch.testing.assert_close(layer.train(training)(x), conv(x), rtol=1e-5, atol=1e-5)


def test_linear_weights_convert_into_fdlinear():
    linear = nn.Linear(24, 40)
    layer = FDLinear(24, 40, kernel_num=4)
    layer.load_state_dict(linear.state_dict(), strict=False)
    x = torch.randn(3, 7, 24)
    torch.testing.assert_close(layer(x), linear(x), rtol=1e-5, atol=1e-5)


def test_pretrained_network_loads_into_a_network_built_with_fdconv():
    plain = nn.Sequential(
        nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.Conv2d(24, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 1)
    )
    built = nn.Sequential(
        FDConv(3, 24, 3, padding=1), nn.ReLU(), FDConv(24, 32, 3, padding=1), nn.ReLU(), FDConv(32, 32, 1)
    )
    missing = built.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all("KSM" in k or "FBM" in k for k in missing)
    x = torch.randn(2, 3, 10, 10)
    torch.testing.assert_close(built(x), plain(x), rtol=1e-5, atol=1e-5)


def test_timm_condconv_state_loads_and_computes_timm_output():
    timm_layers = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    conv = timm_layers.CondConv2d(8, 12, 3, padding=1, num_experts=4, bias=True)
    routing_fn = nn.Linear(8, 4)
    state = OrderedDict(conv.state_dict())
    state.update({f"routing_fn.{k}": v for k, v in routing_fn.state_dict().items()})
    ours = CondConv2d(8, 12, 3, padding=1, num_experts=4)
    ours.load_state_dict(state, strict=True)
    x = torch.randn(3, 8, 7, 6)
    expected = conv(x, torch.sigmoid(routing_fn(x.mean((2, 3)))))
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


def _foreign_mrfa_forward(sd: dict, x: torch.Tensor, names: dict) -> torch.Tensor:
    """UniConvNet's ConvMod computation written from a state_dict with another implementation's names."""

    def conv(key, t, groups=1):
        w = sd[key + ".weight"]
        return F.conv2d(t, w, sd[key + ".bias"], padding=w.shape[-1] // 2, groups=groups)

    def norm(i, t):
        weight, bias = names["norm"](i)
        return F.layer_norm(t.permute(0, 2, 3, 1), (t.shape[1],), sd[weight], sd[bias], 1e-6).permute(0, 3, 1, 2)

    q = torch.chunk(norm(1, x), 4, dim=1)
    context = q[0]
    for i in (1, 2, 3):
        if i > 1:
            context = norm(i, context)
        width = context.shape[1]
        a = conv(names["context"](i) + ".2", F.gelu(conv(names["context"](i) + ".0", context)), groups=width)
        gated = conv(names["proj"](i), a * conv(names["gate"](i), context))
        local = conv(names["refine"](i), conv(names["prep"](i), q[i]), groups=q[i].shape[1])
        local = local + (conv(names["inject"](i), a) if i > 1 else a)
        context = torch.cat((local, gated), dim=1)
    return context


SEED_NAMES = {
    "norm": lambda i: (f"ln_stage{i}.gamma", f"ln_stage{i}.beta"),
    "context": lambda i: f"ctx_branch_s{i}",
    "gate": lambda i: f"gate_branch_s{i}",
    "proj": lambda i: f"post_gate_s{i}",
    "prep": lambda i: f"prep_quarter{i + 1}",
    "refine": lambda i: f"refine3x3_s{i}",
    "inject": lambda i: f"proj_ctx_to_q{i + 1}",
}
REPO_NAMES = {
    "norm": lambda i: (f"norm{i}.weight", f"norm{i}.bias"),
    "context": lambda i: f"a{i}",
    "gate": lambda i: f"v{i}",
    "proj": lambda i: f"v{i}1",
    "prep": lambda i: f"v{i}2",
    "refine": lambda i: f"conv3_{i}",
    "inject": lambda i: f"proj{i}",
}


@pytest.mark.parametrize("names", [SEED_NAMES, REPO_NAMES], ids=["blog-copy", "uniconvnet-repo"])
def test_mrfa_loads_other_implementations(names):
    dim = 16
    shapes = {}
    q = dim // 4
    for i in (1, 2, 3):
        w = i * q
        shapes.update({names["norm"](i)[0]: (w if i > 1 else dim,), names["norm"](i)[1]: (w if i > 1 else dim,)})
        for role, shape in (
            ("gate", (w, w, 1, 1)),
            ("proj", (w, w, 1, 1)),
            ("prep", (q, q, 1, 1)),
            ("refine", (q, 1, 3, 3)),
        ):
            shapes[names[role](i) + ".weight"], shapes[names[role](i) + ".bias"] = shape, shape[:1]
        for part, shape in (("0", (w, w, 1, 1)), ("2", (w, 1, 5 + 2 * i, 5 + 2 * i))):
            shapes[f"{names['context'](i)}.{part}.weight"], shapes[f"{names['context'](i)}.{part}.bias"] = (
                shape,
                shape[:1],
            )
        if i > 1:
            shapes[names["inject"](i) + ".weight"], shapes[names["inject"](i) + ".bias"] = (q, w, 1, 1), (q,)
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=gen, dtype=torch.float64) * 0.3 for k, s in shapes.items()}
    mrfa = MRFA(dim).double()
    mrfa.load_state_dict(state, strict=True)
    x = torch.randn(2, dim, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(mrfa(x), _foreign_mrfa_forward(state, x, names), rtol=1e-12, atol=1e-12)


# ---- model surgery and host-library initialisation keep state
def test_convert_keeps_frozen_parameters_hooks_and_mode():
    model = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1), nn.Conv2d(24, 24, 3, padding=1)).eval()
    model[0].requires_grad_(False)
    seen = []
    model[1].register_forward_hook(lambda m, i, o: seen.append(type(m).__name__))
    model[1].register_forward_pre_hook(lambda m, i: seen.append("pre"))
    convert(model, "fdconv", kernel_num=4)
    assert all(not p.requires_grad for p in model[0].parameters())
    assert all(p.requires_grad for p in model[1].parameters())
    assert not model[0].training and not model[1].training
    model(torch.randn(1, 24, 6, 6))
    assert seen == ["pre", "FDConv"]


@pytest.mark.parametrize("to", ["fdconv", "dyconv", "condconv", "odconv"])
def test_convert_keeps_dtype_and_training_mode(to):
    model = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1)).double().train()
    convert(model, to)
    assert all(t.dtype in (torch.float64, torch.uint8, torch.int64) for t in model.state_dict().values())
    assert all(m.training for m in model.modules())
    assert model(torch.randn(2, 24, 5, 5, dtype=torch.float64)).dtype == torch.float64


def test_convert_keeps_a_torchvision_backbones_frozen_layers():
    backbone_utils = pytest.importorskip("torchvision.models.detection.backbone_utils")
    body = backbone_utils.resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3).body
    assert not any(p.requires_grad for p in body.layer1.parameters())
    report = convert(body, "fdconv", exclude=r"downsample", kernel_num=16)
    assert len(report.replaced) == 48
    assert not any(p.requires_grad for p in body.layer1.parameters())  # FDConvs of a frozen stage stay frozen
    assert all(p.requires_grad for p in body.layer2.parameters())


def test_mmengine_init_weights_keeps_fdconv_neutral():
    mmengine_model = pytest.importorskip("mmengine.model")

    class Backbone(mmengine_model.BaseModule):
        def __init__(self):
            super().__init__(
                init_cfg=[
                    dict(type="Kaiming", layer="Conv2d"),
                    dict(type="Constant", val=1, layer=["_BatchNorm", "GroupNorm"]),
                ]
            )
            self.conv = FDConv(24, 32, 3, padding=1, kernel_num=8)
            self.downsample = nn.Sequential(FDConv(32, 32, 1, kernel_num=8), nn.BatchNorm2d(32))

    model = Backbone()
    model.init_weights()
    x = torch.randn(2, 24, 8, 8)
    for layer, inp in ((model.conv, x), (model.downsample[0], torch.randn(2, 32, 8, 8))):
        layer.eval()
        expected = F.conv2d(inp, layer.spatial_weight(), layer.bias, padding=layer.padding)
        torch.testing.assert_close(layer(inp), expected, rtol=1e-5, atol=1e-5)


def test_official_freqfusion_inert_buffers_load_strictly():
    layer = FreqFusion(16, 24, compressed_channels=16, feature_resample=True, hamming_window=False)
    state = layer.state_dict()
    state["hamming_lowpass"] = torch.tensor([1.0])  # the reference registers [1.0] without a window
    state["hamming_highpass"] = torch.tensor([1.0])
    state["dysampler.init_pos"] = layer.dysampler.official_init_pos().float()
    layer.load_state_dict(state, strict=True)
    state["dysampler.init_pos"] = state["dysampler.init_pos"] + 0.1
    with pytest.raises(RuntimeError, match="init_pos"):
        layer.load_state_dict(state, strict=True)
    state["dysampler.init_pos"] = layer.dysampler.official_init_pos()
    state["hamming_lowpass"] = torch.tensor([0.5])
    with pytest.raises(RuntimeError, match="hamming_window=False"):
        layer.load_state_dict(state, strict=True)


@pytest.mark.parametrize("every_module", [False, True], ids=["top", "every-module"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_meta_device_build_then_reset_equals_a_normal_build(name, every_module):
    """The FSDP2 / torchtitan recipe: build on 'meta', ``to_empty()``, ``reset_parameters()`` (on the top module,
    or on every module that has one), then load the parameters: computed buffers (frequency groups, temperatures,
    windows, statistics) are rebuilt, so the model computes what a normal build does."""
    normal = build(name, 1)
    if not hasattr(normal, "reset_parameters"):
        assert not [*normal.parameters(), *normal.buffers()], "a module with state needs reset_parameters"
        return
    with torch.device("meta"):
        meta = build(name, 1)
    meta.to_empty(device="cpu")
    with torch.no_grad():  # garbage wherever reset_parameters must write
        for t in [*meta.parameters(), *meta.buffers()]:
            t.fill_(7 if t.is_floating_point() else 99)
    for module in [m for m in meta.modules() if hasattr(m, "reset_parameters")] if every_module else [meta]:
        module.reset_parameters()
    built = dict(normal.named_buffers())
    for key, b in meta.named_buffers():
        assert torch.equal(b, built[key]), key
    with torch.no_grad():
        for p, q in zip(meta.parameters(), normal.parameters(), strict=True):
            p.copy_(q)
    args = LAYERS[name].inputs()
    for a, b in zip(outputs(perturb_(meta).eval(), args), outputs(perturb_(normal).eval(), args), strict=True):
        assert torch.equal(a, b)


def test_every_public_layer_round_trips_or_is_opted_out():
    from helpers import assert_covered

    assert_covered(
        {type(build(name, 0)).__name__ for name in LAYERS},
        {
            "UniConvNet": "test_uniconvnet.py (torch.save, deepcopy, state_dict) and tests/project/test_pickles.py",
            "KWLinear": "a KWConv1d (kw-1d)",
            "WarehouseManager": "inside every kw row (the cells)",
        },
    )
