import pytest
import torch
import torch.nn as nn

from freqdyn import CondConv2d, DynamicConv2d, FDConv, FDLinear, ODConv2d, convert, format_overhead, param_overhead

TARGETS = {
    "fdconv": (FDConv, {"kernel_num": 8}),
    "dyconv": (DynamicConv2d, {"num_experts": 3}),
    "condconv": (CondConv2d, {"num_experts": 3}),
    "odconv": (ODConv2d, {"num_experts": 3}),
}


@pytest.mark.slow  # five ResNet-50 conversions; FDConv's +3.6M row is the headline claim
def test_paper_overhead_table_is_reproduced():
    pytest.importorskip("torchvision")
    rows = param_overhead()
    print("\n" + format_overhead(rows))
    measured = {row.label: row for row in rows}
    assert set(measured) == {"CondConv (8x)", "DY-Conv (4x)", "ODConv (4x)", "KW (4x)", "FDConv (K=64)"}
    assert measured["KW (4x)"].measured == 102_015_144 - 25_557_032  # the authors' kw4x_resnet50, exactly
    for row in measured.values():
        assert abs(row.relative_error) <= 0.02, row


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_target_keeps_a_resnet_output(target):
    torchvision = pytest.importorskip("torchvision")
    cls, kwargs = TARGETS[target]
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 48, 48)
    ref = model(x)
    report = convert(model, target, **kwargs)
    assert report.replaced and all(isinstance(model.get_submodule(n), cls) for n in report.replaced)
    assert report.param_delta > 0
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_target_keeps_a_timm_convnext_output(target):
    timm = pytest.importorskip("timm")
    cls, kwargs = TARGETS[target]
    # layer scale 1 (not timm's 1e-6) so that every block's conv visibly shapes the output
    model = timm.create_model("convnext_atto", num_classes=10, ls_init_value=1.0).eval()
    x = torch.randn(2, 3, 64, 64)
    ref = model(x)
    report = convert(model, target, **kwargs)
    assert len(report.replaced) == (24 if target == "fdconv" else 40)
    assert all(isinstance(model.get_submodule(n), cls) for n in report.replaced)
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)


def test_convert_keeps_outputs_at_neutral_attention():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    ref = model(x)
    report = convert(model, "fdconv", kernel_num=8)
    assert report.replaced and all(isinstance(model.get_submodule(n), FDConv) for n in report.replaced)
    assert "conv1" in report.skipped  # the 7x7 stem is gated out
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)


def test_convert_selectors_and_shared_modules():
    shared = nn.Conv2d(32, 32, 3, padding=1)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Conv2d(32, 32, 1))
    report = convert(model, include=lambda name, m: m.kernel_size == (3, 3), kernel_num=4)
    assert report.replaced == ["0", "2"] and model[0] is model[2] and isinstance(model[0], FDConv)
    assert report.skipped == {"3": "not included"}
    with pytest.raises(ValueError, match="unknown conversion target"):
        convert(model, to="nope")


def test_conv2d_subclasses_are_listed_as_skipped_with_the_reason():
    timm_layers = pytest.importorskip("timm.layers")
    model = nn.Sequential(
        timm_layers.StdConv2d(24, 32, 3), timm_layers.Conv2dSame(32, 32, 3, stride=2), nn.Conv2d(32, 32, 3)
    )
    report = convert(model, "fdconv", kernel_num=8)
    assert report.replaced == ["2"]
    assert set(report.skipped) == {"0", "1"}
    assert "StdConv2d subclasses Conv2d" in report.skipped["0"] and "'same' padding" in report.skipped["1"]
    assert "bake_standardization=True" in report.skipped["0"]
    assert isinstance(model[0], timm_layers.StdConv2d)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("StdConv2d", {}),
        ("ScaledStdConv2d", {}),
        ("StdConv2dSame", {}),
        ("ScaledStdConv2dSame", {"stride": 1}),
        ("StdConv2d", {"stride": 2}),
    ],
)
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_weight_standardised_convs_convert_by_opt_in(name, kwargs, target):
    """bake_standardization=True: the converted layer starts from the standardised kernel (same function, an
    independent computation: F.conv2d with the kernel standardised here), which training then leaves free."""
    timm_layers = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    conv = getattr(timm_layers, name)(32, 40, 3, **kwargs)
    if hasattr(conv, "gain"):
        with torch.no_grad():
            conv.gain.uniform_(0.5, 1.5)
    model = nn.Sequential(conv)
    cls, target_kwargs = TARGETS[target]
    report = convert(model, target, bake_standardization=True, **target_kwargs)
    assert report.replaced == ["0"] and isinstance(model[0], cls)
    w = conv.weight.detach()
    mean, var = w.mean((1, 2, 3), keepdim=True), w.var((1, 2, 3), unbiased=False, keepdim=True)
    kernel = (w - mean) / torch.sqrt(var + conv.eps) * (conv.gain * conv.scale if hasattr(conv, "gain") else 1)
    x = torch.randn(2, 32, 9, 10)
    same = "Same" in name and conv.same_pad
    expected = torch.nn.functional.conv2d(
        torch.nn.functional.pad(x, (1, 1, 1, 1)) if same else x,
        kernel,
        conv.bias,
        conv.stride,
        0 if same else conv.padding,
    )
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("kernel,dilation", [(3, 1), (4, 1), (3, 2)])
def test_stride_one_conv2d_same_converts_exactly(target, kernel, dilation):
    """timm's Conv2dSame pads TF-style per input size; at stride 1 that is padding='same' for every size (odd ones
    and even kernels included), so it converts and computes its function."""
    timm_layers = pytest.importorskip("timm.layers")
    torch.manual_seed(0)
    conv = timm_layers.Conv2dSame(32, 40, kernel, dilation=dilation)
    model = nn.Sequential(conv)
    cls, kwargs = TARGETS[target]
    report = convert(model, target, **kwargs)
    if target == "fdconv" and kernel != 3:  # FDConv's own gating keeps kernels outside {1, 3} plain
        assert report.replaced == [] and "gating" in report.skipped["0"]
        return
    assert report.replaced == ["0"] and isinstance(model[0], cls)
    for size in ((9, 9), (8, 11)):
        x = torch.randn(2, 32, *size)
        torch.testing.assert_close(model(x), conv(x), rtol=1e-4, atol=1e-5)


def test_fdlinear_converts_transformer_mlps_and_keeps_the_function():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    report = convert(model, "fdlinear", include=r"\.mlp\.fc", kernel_num=16)
    assert len(report.replaced) == 24 and all(".mlp.fc" in n for n in report.replaced)
    assert all(isinstance(model.get_submodule(n), FDLinear) for n in report.replaced)
    assert not isinstance(model.head, FDLinear)  # not included
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
