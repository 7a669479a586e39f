import copy
import io
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from freqdyn import FDConv, gated_fdconv
from freqdyn.layers import gated_from_conv, uses_fdconv
from freqdyn.tools.reference import naive_fdconv
from helpers import CONV_CASES, IDS, gradcheck_module, make_conv, make_input, perturb_


@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
@pytest.mark.parametrize("training", [False, True])
def test_from_conv_equals_conv_at_neutral_attention(case, training, device):
    conv = make_conv(case).to(device).train(training)
    layer = FDConv.from_conv(conv, kernel_num=8)
    assert layer.training == training
    x = make_input(case).to(device)
    torch.testing.assert_close(layer(x), conv(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kernel_num,param_ratio", [(1, 1), (1, 3), (7, 2), (64, 1), (None, 1)])
@pytest.mark.parametrize("aggregation", ["weight", "feature"])
@pytest.mark.parametrize("synthesis", ["fft", "basis"])
def test_neutral_for_every_spectrum_split(kernel_num, param_ratio, aggregation, synthesis):
    conv = nn.Conv2d(24, 36, 3, padding=1)
    layer = FDConv.from_conv(
        conv, kernel_num=kernel_num, param_ratio=param_ratio, aggregation=aggregation, synthesis=synthesis
    )
    x = torch.randn(2, 24, 8, 8)
    torch.testing.assert_close(layer(x), conv(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(layer.spatial_weight(), conv.weight, rtol=0, atol=1e-6)


def test_fresh_layer_is_a_conv_with_its_own_spatial_weight():
    layer = FDConv(32, 32, 3, padding=1, kernel_num=16)
    x = torch.randn(2, 32, 12, 12)
    ref = nn.functional.conv2d(x, layer.spatial_weight(), layer.bias, padding=1)
    torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", CONV_CASES, ids=IDS)
def test_matches_naive_reference_with_random_attention(case, device):
    layer = perturb_(FDConv.from_conv(make_conv(case), kernel_num=8), seed=1).to(device)
    x = make_input(case).to(device)
    for training in (False, True):
        layer.train(training)
        torch.testing.assert_close(layer(x), naive_fdconv(layer, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("aggregation", ["weight", "feature"])
@pytest.mark.parametrize("synthesis", ["fft", "basis"])
@pytest.mark.parametrize("param_ratio", [1, 2])
def test_paths_agree_and_match_per_sample_loop(aggregation, synthesis, param_ratio):
    conv = nn.Conv2d(32, 40, 3, padding=1, groups=2)
    layer = perturb_(
        FDConv.from_conv(conv, kernel_num=8, param_ratio=param_ratio, aggregation=aggregation, synthesis=synthesis),
        seed=2,
    ).eval()
    x = torch.randn(5, 32, 10, 9)
    y = layer(x)
    loop = torch.cat([layer(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(y, loop, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y, naive_fdconv(layer, x), rtol=1e-4, atol=1e-4)


def test_eval_cache_follows_weight_updates():
    layer = perturb_(FDConv(24, 24, 3, padding=1, kernel_num=4, synthesis="basis"), seed=3).eval()
    x = torch.randn(2, 24, 8, 8)
    with torch.no_grad():
        first = layer(x)
        layer.dft_weight.mul_(2)
        second = layer(x)
    torch.testing.assert_close(second, naive_fdconv(layer, x), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(first, second)


@pytest.mark.parametrize(
    "aggregation,synthesis,groups,training",
    [
        pytest.param("weight", "fft", 1, True, marks=pytest.mark.slow),  # the full Jacobian
        ("feature", "basis", 1, False),
        ("weight", "basis", 2, False),
        ("feature", "fft", 2, True),
    ],
)
def test_gradcheck_every_branch(aggregation, synthesis, groups, training):
    layer = FDConv(
        4,
        6,
        3,
        padding=1,
        groups=groups,
        kernel_num=3,
        param_ratio=2,
        aggregation=aggregation,
        synthesis=synthesis,
        dtype=torch.float64,
    )
    perturb_(layer, seed=4).train(training)
    assert layer.FBM is not None and layer.KSM_Local is not None and layer.KSM_Global.kernel_fc is not None
    # the full (slow) Jacobian check once, the fast random-projection check elsewhere
    assert gradcheck_module(layer, torch.randn(2, 4, 5, 6, dtype=torch.float64), fast=groups == 2 or not training)


def test_gradcheck_tanh_acts_and_fbm_groups():
    layer = FDConv(
        4,
        4,
        3,
        padding=1,
        kernel_num=2,
        ksm_act="tanh",
        fbm_act="tanh",
        fbm_spatial_group=2,
        stride=2,
        dtype=torch.float64,
    )
    assert gradcheck_module(perturb_(layer, seed=5), torch.randn(2, 4, 6, 5, dtype=torch.float64))


def test_every_parameter_gets_a_gradient():
    layer = FDConv(32, 32, 3, padding=1, kernel_num=8)
    layer(torch.randn(2, 32, 8, 8)).square().mean().backward()
    missing = [n for n, p in layer.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # heads and the local conv start at zero, so what feeds them sees zero gradient on the first step only
    assert set(missing) <= {
        "KSM_Global.fc.weight",
        "KSM_Global.bn.weight",
        "KSM_Global.bn.bias",
        "KSM_Global.relu.scale",
        "KSM_Global.relu.bias",
        "KSM_Local.norm.weight",
        "KSM_Local.norm.bias",
    }, missing
    perturb_(layer, seed=6).zero_grad()
    layer(torch.randn(2, 32, 8, 8)).square().mean().backward()
    for n, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n


def test_state_dict_round_trip_and_weights_only_load():
    layer = perturb_(FDConv(32, 48, 3, padding=1, kernel_num=16), seed=7).eval()
    assert "freq_group" in layer.state_dict()
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    clone = FDConv(32, 48, 3, padding=1, kernel_num=16).eval()
    clone.load_state_dict(state)
    x = torch.randn(2, 32, 9, 9)
    assert torch.equal(clone(x), layer(x))


def test_checkpoint_without_group_buffer_loads_strictly():
    layer = perturb_(FDConv(32, 48, 3, padding=1, kernel_num=16), seed=13).eval()
    state = {k: v for k, v in layer.state_dict().items() if k != "freq_group"}  # as in official checkpoints
    clone = FDConv(32, 48, 3, padding=1, kernel_num=16).eval()
    clone.load_state_dict(state, strict=True)
    x = torch.randn(2, 32, 9, 9)
    assert torch.equal(clone(x), layer(x))


@pytest.mark.parametrize(
    "args,dynamic",
    [
        ((16, 32, 3), False),
        ((17, 17, 3), True),
        ((32, 32, 5), False),
        ((32, 32, (1, 3)), True),
        ((32, 32, (3, 5)), False),
    ],
)
def test_the_official_gating_is_a_policy_returning_fdconv_or_conv2d(args, dynamic):
    """min(in, out) <= 16 or a kernel side outside {1, 3}: nn.Conv2d with the authors' keys (weight, bias)."""
    built = gated_fdconv(*args, padding=0, kernel_num=4)
    assert isinstance(built, FDConv) is dynamic and uses_fdconv(*args) is dynamic
    if not dynamic:
        assert type(built) is nn.Conv2d and set(built.state_dict()) == {"weight", "bias"}
    conv = nn.Conv2d(*args)
    converted = gated_from_conv(conv, kernel_num=4)
    assert (converted is conv) is not dynamic
    assert isinstance(gated_fdconv(*args, use_fdconv_if_c_gt=0, use_fdconv_if_k_in=(1, 3, 5), kernel_num=4), FDConv)


def test_an_fdconv_is_dynamic_at_any_width_and_kernel():
    layer = FDConv(8, 8, 5, padding=2, kernel_num=4)
    assert layer.dft_weight is not None and "kernel_num=4" in repr(layer)
    conv = nn.Conv2d(8, 8, 5, padding=2)
    x = torch.randn(2, 8, 7, 7)
    torch.testing.assert_close(FDConv.from_conv(conv, kernel_num=4)(x), conv(x), rtol=0, atol=1e-5)


def test_batch_of_one_trains():
    layer = perturb_(FDConv(32, 32, 3, padding=1, kernel_num=8), seed=8).train()
    stats = layer.KSM_Global.bn.running_mean.clone()
    x = torch.randn(1, 32, 6, 6)
    y = layer(x)
    y.sum().backward()
    assert torch.equal(layer.KSM_Global.bn.running_mean, stats)
    torch.testing.assert_close(y, layer.eval()(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda: torch.randn(2, 31, 8, 8), "32 input channels"),
        (lambda: torch.randn(32, 8, 8), "4-D"),
        (lambda: torch.ones(2, 32, 8, 8, dtype=torch.int64), "floating-point"),
        (lambda: torch.randn(2, 32, 0, 8), "empty spatial"),
    ],
)
def test_bad_input_raises_value_error(bad, match):
    layer = FDConv(32, 32, 3, padding=1, kernel_num=8)
    with pytest.raises(ValueError, match=match):
        layer(bad())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(groups=3), "groups"),
        (dict(padding="same", stride=2), "same"),
        (dict(padding_mode="mirror"), "padding_mode"),
        (dict(kernel_num=10**7), "kernel_num"),
        (dict(param_ratio=0), "param_ratio"),
        (dict(aggregation="x"), "aggregation"),
        (dict(ksm_act="relu"), "ksm_act"),
        (dict(fbm_spatial_group=5), "spatial_group"),
        (dict(kernel_size=(3, 3, 3)), "kernel_size"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    args = dict(in_channels=32, out_channels=32, kernel_size=3, padding=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        FDConv(**args)


def relative_error(y, ref):
    return float((y.detach().float() - ref.detach()).norm() / ref.detach().norm())


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 5e-3), (torch.bfloat16, 2e-2)])
def test_half_precision_module_keeps_dtype(dtype, tol):
    conv = nn.Conv2d(32, 32, 3, padding=1)
    layer = perturb_(FDConv.from_conv(conv, kernel_num=8), seed=9).eval()
    x = torch.randn(2, 32, 10, 6)  # not a power of two
    ref = layer(x)
    y = layer.to(dtype)(x.to(dtype))
    assert y.dtype == dtype
    assert relative_error(y, ref) < tol


def test_cpu_autocast_bfloat16_close_to_float32():
    layer = perturb_(FDConv(32, 32, 3, padding=1, kernel_num=8), seed=10).eval()
    x = torch.randn(2, 32, 10, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert relative_error(y, layer(x)) < 2e-2


def test_channels_last_model_and_input():
    layer = perturb_(FDConv(32, 32, 3, padding=1, kernel_num=8), seed=11).eval()
    x = torch.randn(2, 32, 9, 9)
    ref = layer(x)
    layer = layer.to(memory_format=torch.channels_last)
    y = layer(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_reset_parameters_restores_neutral_heads_and_repr():
    layer = perturb_(FDConv(32, 32, 3, padding=1, kernel_num=8), seed=12)
    layer.reset_parameters()
    for head in layer.KSM_Global.heads():
        assert head.weight.abs().sum() == 0 and head.bias.abs().sum() == 0
    x = torch.randn(2, 32, 8, 8)
    ref = nn.functional.conv2d(x, layer.spatial_weight(), layer.bias, padding=1)
    torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-5)
    text = repr(layer)
    assert "kernel_num=8" in text and "padding=(1, 1)" in text


@pytest.mark.parametrize("kernel_num,param_ratio", [(8, 1), (3, 2), (1, 1)])
@pytest.mark.parametrize("groups", [1, 2])
def test_inference_path_matches_autograd_path_and_keeps_caches(kernel_num, param_ratio, groups):
    # without autograd the kernel factors are combined in place; the K*P == 1 kernel is cached and shared
    layer = FDConv(16, 24, 3, padding=1, groups=groups, kernel_num=kernel_num, param_ratio=param_ratio)
    layer = perturb_(layer, seed=13).eval()
    x = torch.randn(3, 16, 7, 6)
    expected = naive_fdconv(layer, x)
    with torch.no_grad():
        first, second = layer(x), layer(x)
    torch.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(second, first, rtol=0, atol=0)


def test_wide_layer_saves_no_per_sample_kernels_for_backward():
    """Memory saved for backward is deterministic on CPU: 512 -> 512 3x3 at 7^2, B=8 (ResNet-50's layer4)."""
    from freqdyn.tools.timing import saved_megabytes

    conv = nn.Conv2d(512, 512, 3, padding=1)
    x = torch.randn(8, 512, 7, 7)
    cpu = torch.device("cpu")
    plain = saved_megabytes(lambda: conv(x).sum().backward(), cpu)  # x and the 9 MB kernel
    layer = FDConv.from_conv(conv, kernel_num=64)
    saved = saved_megabytes(lambda: layer(x).sum().backward(), cpu)
    x_mb = x.numel() * 4 / 2**20
    assert saved <= plain and saved <= 4 * x_mb  # the FBM bands and the conv input; 8 x 9 MB kernels are rebuilt
    keep = FDConv.from_conv(conv, kernel_num=64, recompute_kernels=False)
    assert saved_megabytes(lambda: keep(x).sum().backward(), cpu) > 8 * 9  # the kernels, when kept


def test_kernels_small_beside_the_input_map_or_outright_are_kept_not_recomputed():
    """The synthesised kernel, the local factor and the group map (2.5 * B * O * I * kh * kw values) are saved, as
    with recompute_kernels=False, where they are no larger than the conv's input or than 2^20 values; otherwise they
    are rebuilt in backward."""
    from freqdyn.tools.timing import saved_megabytes

    cpu = torch.device("cpu")

    def saved(layer: nn.Module, x: torch.Tensor) -> float:
        return saved_megabytes(lambda: layer(x).sum(), cpu)

    wide = FDConv(128, 128, 3, padding=1, kernel_num=8)  # 2.5 * 4 * 147,456 values: over 2^20
    wide_keep = FDConv(128, 128, 3, padding=1, kernel_num=8, recompute_kernels=False)
    small, large = torch.randn(4, 128, 8, 8), torch.randn(4, 128, 55, 55)  # 128 * 55^2 >= 2.5 * 147,456
    assert saved(wide, small) < saved(wide_keep, small)
    assert saved(wide, large) == saved(wide_keep, large)
    narrow = FDConv(24, 32, 3, padding=1, kernel_num=8)  # 2.5 * 2 * 6,912 values: kept on any map
    narrow_keep = FDConv(24, 32, 3, padding=1, kernel_num=8, recompute_kernels=False)
    x = torch.randn(2, 24, 9, 8)
    assert saved(narrow, x) == saved(narrow_keep, x)


def test_recomputed_kernels_give_the_same_gradients():
    conv = nn.Conv2d(24, 32, 3, padding=1, dtype=torch.float64)
    x = torch.randn(3, 24, 9, 8, dtype=torch.float64)
    grads = []
    for recompute in (True, False):
        torch.manual_seed(0)
        layer = perturb_(FDConv.from_conv(conv, kernel_num=8, recompute_kernels=recompute), seed=7).train()
        inp = x.clone().requires_grad_()
        layer(inp).square().sum().backward()
        grads.append([inp.grad] + [p.grad for p in layer.parameters()] + [layer.KSM_Global.bn.running_var])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("recompute", [True, False])
@pytest.mark.parametrize("param", ["dft_weight", "KSM_Local.conv.weight", "KSM_Local.norm.weight", "bias"])
def test_in_place_parameter_change_before_backward_raises_as_conv2d(recompute, param):
    """Autograd's error for a tensor its backward needs, as nn.Conv2d raises for its weight (not its bias: neither
    backward needs the bias value, so changing it is not an error in either)."""
    layer = perturb_(FDConv(24, 32, 3, padding=1, kernel_num=8, recompute_kernels=recompute), seed=12).train()
    x = torch.randn(2, 24, 8, 8, requires_grad=True)
    out = layer(x)
    with torch.no_grad():
        layer.get_parameter(param).mul_(1.5)
    if param == "bias":
        out.sum().backward()
        return
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_ksm_local_hooks_fire_once_per_forward():
    """Hooks on KSM-Local see the whole batch once, and not again in backward."""
    layer = perturb_(FDConv(24, 32, 3, padding=1, kernel_num=8, dtype=torch.float64), seed=13).train()
    plain = copy.deepcopy(layer)
    seen: list[tuple[int, ...]] = []

    def hook(module, args, out):  # autograd work in a hook, as feature-extraction hooks do
        seen.append(tuple(out.shape))
        return out * 1.0

    layer.KSM_Local.register_forward_hook(hook)
    x = torch.randn(3, 24, 8, 8, dtype=torch.float64, requires_grad=True)
    layer(x).square().sum().backward()
    assert seen == [(3, 32, 24, 3, 3)]
    y = x.detach().requires_grad_()
    plain(y).square().sum().backward()
    torch.testing.assert_close(x.grad, y.grad)
    for (name, p), q in zip(layer.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_saturated_attention_warns_once_in_training_only():
    """The opt-in watch (freqdyn.analysis.watch_saturation): a warning per collapsed layer, in training only."""
    from freqdyn.analysis import watch_saturation

    layer = FDConv(32, 32, 3, padding=1, kernel_num=8)
    watch_saturation(layer)
    x = torch.randn(2, 32, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a healthy layer, and eval, never warn
        for _ in range(3):
            layer.train()(x)
    saturated = FDConv(32, 32, 3, padding=1, kernel_num=8)
    with torch.no_grad():
        saturated.KSM_Global.spatial_fc.bias.fill_(-40.0)
    handles = watch_saturation(saturated)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        saturated.eval()(x)
    with pytest.warns(RuntimeWarning, match="spatial saturated"):
        saturated.train()(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per layer
        for _ in range(60):
            saturated(x)
    for handle in handles:
        handle.remove()
    fresh = FDConv(32, 32, 3, padding=1, kernel_num=8)
    fresh.load_state_dict(saturated.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # unwatched: forward itself never checks (no host sync)
        fresh.train()(x)


def test_high_learning_rate_collapse_and_the_temperature_remedy():
    """SGD at lr 0.3 (momentum 0.9) saturates the official attentions within a few dozen steps, and the watch
    warns; temperatures of 16 keep every gate away from its bounds (benchmarks/bench_attention_norm.py: accuracy)."""
    from freqdyn.analysis import watch_saturation

    def train(**temps) -> tuple[list[str], list[FDConv]]:
        torch.manual_seed(0)
        layers = [FDConv(32, 32, 3, padding=1, kernel_num=8, **temps) for _ in range(2)]
        net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            *[m for layer in layers for m in (layer, nn.BatchNorm2d(32), nn.ReLU())],
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 4),
        )
        watch_saturation(net)
        optimiser = torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.9)
        data = torch.Generator().manual_seed(1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(51):  # the check runs on the 1st and the 51st training forward
                images = torch.randn(8, 3, 16, 16, generator=data)
                labels = (images[:, 0].mean((1, 2)) > 0).long() + 2 * (images[:, 1].mean((1, 2)) > 0).long()
                loss = F.cross_entropy(net(images), labels)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)], layers

    warned, _ = train()
    assert any("saturated" in message for message in warned)
    warned, layers = train(temp=16.0, kernel_temp=16.0, fbm_temp=16.0)
    assert not warned
    x = torch.randn(8, 32, 16, 16)
    for layer in layers:
        assert not layer.KSM_Global.saturated(layer.KSM_Global(x.mean((2, 3))), share=0.05)


@pytest.mark.parametrize("param_ratio", [1, 2, 3])
@pytest.mark.parametrize("cls", ["conv", "linear"])
def test_official_ratio_scaling_adds_the_copies(param_ratio, cls):
    """The authors' alpha multiplies by P: with the same weights, 'official' computes P times the default kernel
    (linear in the kernel, so P times the output less the bias); conversion stays exact under both rules."""
    from freqdyn import FDLinear

    def build(scaling: str) -> nn.Module:
        torch.manual_seed(5)
        if cls == "conv":
            return FDConv(
                24, 32, 3, padding=1, kernel_num=4, param_ratio=param_ratio, ratio_scaling=scaling, dtype=torch.float64
            )
        return FDLinear(24, 32, kernel_num=4, param_ratio=param_ratio, ratio_scaling=scaling, dtype=torch.float64)

    mean, official = perturb_(build("mean"), seed=14).eval(), build("official").eval()
    official.load_state_dict(mean.state_dict(), strict=True)
    x = torch.randn(2, 24, 7, 7, dtype=torch.float64) if cls == "conv" else torch.randn(2, 5, 24, dtype=torch.float64)
    bias = mean.bias.reshape(-1, 1, 1) if cls == "conv" else mean.bias
    with torch.no_grad():
        torch.testing.assert_close(official(x) - bias, param_ratio * (mean(x) - bias), rtol=1e-10, atol=1e-10)
    plain = nn.Conv2d(24, 32, 3, padding=1, dtype=torch.float64)
    converted = FDConv.from_conv(plain, kernel_num=4, param_ratio=param_ratio, ratio_scaling="official")
    y = torch.randn(2, 24, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(converted(y), plain(y), rtol=1e-10, atol=1e-10)
