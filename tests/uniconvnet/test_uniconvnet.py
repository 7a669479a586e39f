"""DCNv3 against a per-point computation, UniConvNet against the authors' golden model, and its timm / mmengine fit."""

import math

import pytest
import torch
import torch.nn as nn

from freqdyn import DCNv3, UniConvNet, profile, uniconvnet
from freqdyn.layers import dcnv3_sample
from freqdyn.models import SCALES
from helpers import GOLDEN as GOLDEN_DIR

GOLDEN = GOLDEN_DIR / "uniconvnet_a.pt"


def per_point_dcnv3(value, offset, mask, kernel, pad, dilation, group):
    """DCNv3's definition, one output value at a time: at pixel (i, j), point p = a * k + b (x from a, y from b),
    channel c of group g reads value at (i + (b - r) * dilation + dy, j + (a - r) * dilation + dx), r = (k - 1) / 2
    (zero-padded map, bilinear, zero outside), times the modulation, summed over the points (stride 1)."""
    batch, height, width, channels = value.shape
    per_group, reach = channels // group, (kernel - 1) // 2
    out = torch.zeros_like(value)
    padded = torch.nn.functional.pad(value, (0, 0, pad, pad, pad, pad))

    def read(n, y, x, c):
        y0, x0 = math.floor(y), math.floor(x)
        total = value.new_zeros(())
        for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                if 0 <= yy < padded.shape[1] and 0 <= xx < padded.shape[2]:
                    total = total + wy * wx * padded[n, yy, xx, c]
        return total

    for n in range(batch):
        for i in range(height):
            for j in range(width):
                for g in range(group):
                    for a in range(kernel):
                        for b in range(kernel):
                            p = a * kernel + b
                            dx, dy = offset[n, i, j, (g * kernel * kernel + p) * 2 : (g * kernel * kernel + p) * 2 + 2]
                            y = i + reach * dilation + (b - reach) * dilation + dy.item()
                            x = j + reach * dilation + (a - reach) * dilation + dx.item()
                            weight = mask[n, i, j, g * kernel * kernel + p]
                            for c in range(g * per_group, (g + 1) * per_group):
                                out[n, i, j, c] += weight * read(n, y, x, c)
    return out


@pytest.mark.parametrize("kernel,dilation,group,size", [(3, 1, 2, (4, 5)), (3, 2, 1, (5, 3)), (5, 1, 3, (3, 4))])
@pytest.mark.parametrize("base_grid", ["official", "exact"])
def test_dcnv3_sampling_equals_the_per_point_definition(kernel, dilation, group, size, base_grid):
    gen = torch.Generator().manual_seed(0)
    points, pad = kernel * kernel, dilation * (kernel - 1) // 2
    value = torch.randn(2, *size, 2 * group, generator=gen, dtype=torch.float64)
    offset = 1.5 * torch.randn(2, *size, group * points * 2, generator=gen, dtype=torch.float64)
    mask = torch.randn(2, *size, group * points, generator=gen, dtype=torch.float64)
    out = dcnv3_sample(value, offset, mask, kernel, 1, pad, dilation, group, base_grid=base_grid)
    tol = 1e-5 if base_grid == "official" else 1e-10  # the official regular points carry float32 rounding
    torch.testing.assert_close(
        out, per_point_dcnv3(value, offset, mask, kernel, pad, dilation, group), rtol=tol, atol=tol
    )


def test_dcnv3_gradcheck():
    layer = DCNv3(8, 3, pad=1, group=2, base_grid="exact", dtype=torch.float64)
    with torch.no_grad():
        layer.offset.weight.normal_(0, 0.5)
        layer.offset.bias.normal_(0, 0.3)  # off the integer grid: bilinear weights in play
        layer.mask.weight.normal_(0, 0.5)
    x = torch.randn(1, 3, 4, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    params = [p for p in layer.parameters()]
    assert torch.autograd.gradcheck(
        lambda *ps: torch.func.functional_call(
            layer, dict(zip([n for n, _ in layer.named_parameters()], ps, strict=True)), (x,)
        ),
        params,
    )


def test_dcnv3_rejects_bad_arguments_and_inputs():
    with pytest.raises(ValueError):
        DCNv3(10, group=4)
    with pytest.raises(ValueError):
        DCNv3(8, 3, pad=2)
    with pytest.raises(ValueError):
        DCNv3(8, base_grid="float64")
    with pytest.raises(ValueError, match="channels-last"):
        DCNv3(8, group=2)(torch.randn(1, 8, 4, 4))


def _golden():
    f = torch.load(GOLDEN, weights_only=True)
    steps = f["state_dict_log2_step"].values()
    state = {k: q.double() * 2.0 ** int(e) for (k, q), e in zip(f["state_dict_int8"].items(), steps, strict=True)}
    return f, state


def test_authors_uniconvnet_a_checkpoint_computes_their_function():
    f, state = _golden()
    model = uniconvnet("a", num_classes=10, dtype=torch.float64).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        logits, features = model(f["x"]), model.forward_features(f["x"])
    for ours, theirs in ((logits, f["y"]), (features, f["features"])):
        assert (ours - theirs).abs().max() <= 1e-10 * theirs.abs().max()
    exact = uniconvnet("a", num_classes=10, base_grid="exact", dtype=torch.float64).eval()
    exact.load_state_dict(state, strict=True)
    with torch.no_grad():
        moved = (exact(f["x"]) - f["y"]).abs().max() / f["y"].abs().max()
    assert 1e-6 < moved < 1e-3  # the authors' float32 sampling grid matters, as their README measured (3.7e-5)


def test_state_dict_round_trip_and_backbone_outputs():
    torch.manual_seed(0)
    model = uniconvnet("a", num_classes=7).eval()
    copy = uniconvnet("a", num_classes=7).eval()
    copy.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 3, 65, 47)  # odd sizes: every stride-2 conv rounds up
    with torch.no_grad():
        torch.testing.assert_close(copy(x), model(x), rtol=0, atol=0)
        backbone = uniconvnet("a", num_classes=0, out_indices=(0, 1, 2, 3))
        backbone.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("head.")})
        maps = backbone.eval()(x)
    assert [tuple(m.shape) for m in maps] == [(1, 24, 17, 12), (1, 48, 9, 6), (1, 96, 5, 3), (1, 192, 3, 2)]
    pooled = model.norm(maps[-1].mean((-2, -1)))
    torch.testing.assert_close(model.head(pooled), model(x), rtol=1e-6, atol=1e-6)


def test_model_pickles_and_deep_copies(tmp_path):
    import copy as copy_module

    torch.manual_seed(0)
    model = uniconvnet("a", num_classes=5).eval()
    torch.save(model, tmp_path / "model.pt")
    reloaded = torch.load(tmp_path / "model.pt", weights_only=False)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for other in (reloaded, copy_module.deepcopy(model)):
            torch.testing.assert_close(other(x), model(x), rtol=0, atol=0)


def test_a_training_step_reaches_every_parameter():
    torch.manual_seed(0)
    model = uniconvnet("a", num_classes=5).train()
    with torch.no_grad():  # layer scales away from 1e-6 and DCNv3's zero-initialised modulation and offsets moved,
        for name, p in model.named_parameters():  # so that every branch's gradient is visible
            if name.endswith(("gamma1", "gamma2", "layer_scale")):
                p.fill_(0.5)
            elif name.endswith(("dcn.mask.bias", "dcn.offset.bias")):
                p.uniform_(0.2, 0.7)
            elif name.endswith(("dcn.mask.weight", "dcn.offset.weight")):
                p.normal_(0, 0.1)
    model(torch.randn(2, 3, 32, 32)).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize("scale,params_m", [("a", 3.4), ("p0", 5.2), ("p1", 6.1), ("n0", 10.2)])
def test_parameter_counts_match_the_authors_table(scale, params_m):
    model = uniconvnet(scale, device="meta")
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - params_m) < 0.06  # their table: 1 decimal


def test_flops_count_the_deformable_sampling():
    model = uniconvnet("a", num_classes=10)
    counted = profile(model.eval(), (1, 3, 64, 64))
    assert any(c.kind == "DCNv3" for c in counted.layers)
    plain = sum(c.flops for c in counted.layers if c.kind == "DCNv3")
    assert plain > 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        uniconvnet("q")
    with pytest.raises(ValueError):
        UniConvNet((2, 2, 2), (8, 16, 32))
    with pytest.raises(ValueError):
        uniconvnet("a", out_indices=(4,))


def test_timm_create_model_features_only():
    timm = pytest.importorskip("timm")
    import freqdyn.integrations.timm  # noqa: F401 - registers the models

    assert {f"uniconvnet_{s}" for s in SCALES} <= set(timm.list_models("uniconvnet_*"))
    model = timm.create_model("uniconvnet_a", features_only=True).eval()
    assert model.feature_info.channels() == [24, 48, 96, 192] and model.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 24, 16, 16), (1, 48, 8, 8), (1, 96, 4, 4), (1, 192, 2, 2)]
    classifier = timm.create_model("uniconvnet_a", num_classes=3)
    assert isinstance(classifier, UniConvNet) and classifier.head.out_features == 3


def test_timm_pretrained_says_where_the_weights_are_and_loads_a_downloaded_file(tmp_path):
    """timm has nothing to download: pretrained=True names the authors' files and how to load one; a file in their
    format ({'model': state_dict, ...}) then loads through timm's own pretrained path, another class count too."""
    timm = pytest.importorskip("timm")
    import freqdyn.integrations.timm  # noqa: F401 - registers the models

    with pytest.raises(RuntimeError, match=r"uniconvnet_t_1k_224_ema\.pth.*pretrained_cfg_overlay=dict\(file="):
        timm.create_model("uniconvnet_t", pretrained=True)
    authors = uniconvnet("a").state_dict()
    path = tmp_path / "uniconvnet_a_1k_224.pth"
    torch.save({"model": authors, "epoch": 299}, path)
    model = timm.create_model("uniconvnet_a", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in authors.items())
    fine_tune = timm.create_model(
        "uniconvnet_a", pretrained=True, num_classes=7, pretrained_cfg_overlay=dict(file=str(path))
    )
    assert fine_tune.head.out_features == 7
    assert torch.equal(fine_tune.norm.weight, authors["norm.weight"])


def test_mmengine_backbone_with_pretrained_init_cfg(tmp_path):
    pytest.importorskip("mmengine")
    from mmengine.registry import MODELS

    import freqdyn.integrations.mmengine  # noqa: F401 - registers the backbone

    torch.manual_seed(0)
    source = uniconvnet("a", num_classes=10)
    path = tmp_path / "uniconvnet_a.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    backbone = MODELS.build(
        dict(type="UniConvNet", arch="a", out_indices=(1, 2, 3), init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    )
    backbone.init_weights()
    assert isinstance(backbone, nn.Module)
    torch.testing.assert_close(backbone.stages[2][0].dcn.offset.weight, source.stages[2][0].dcn.offset.weight)
    with torch.no_grad():
        maps = backbone.eval()(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [48, 96, 192]


def test_empty_batch_half_precision_and_channels_last():
    torch.manual_seed(0)
    model = uniconvnet("a", num_classes=4).eval()
    x = torch.randn(2, 3, 33, 31)
    with torch.no_grad():
        reference = model(x)
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), reference)
        assert model(x[:0]).shape == (0, 4)
        half = model.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), reference, rtol=0.1, atol=0.1)
    empty = torch.randn(0, 3, 32, 32, requires_grad=True)
    uniconvnet("a", num_classes=4).train()(empty).sum().backward()
    assert empty.grad is not None and empty.grad.shape == empty.shape


def test_no_classes_returns_the_pooled_features_as_timm_models_do():
    """timm's convention: num_classes=0 (or reset_classifier(0)) makes forward return (B, num_features)."""
    model = uniconvnet("a", num_classes=0).eval()
    x = torch.randn(2, 3, 64, 64)
    last = model.forward_intermediates(x, indices=1, intermediates_only=True)[0]
    pooled = torch.nn.functional.layer_norm(
        last.mean((-2, -1)), (model.num_features,), model.norm.weight, model.norm.bias, model.norm.eps
    )
    torch.testing.assert_close(model(x), pooled)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5) and model.get_classifier().out_features == 5
    model.reset_classifier(0)
    torch.testing.assert_close(model(x), pooled)
