"""Golden data from running the authors' code (tests/golden/README.md): checkpoints load strictly and compute
the authors' function to float64 rounding."""

import re

import pytest
import torch

from freqdyn import FDConv, FreqFusion
from freqdyn.layers import frequency_groups
from freqdyn.layers.fdconv.low_pass import band_masks
from freqdyn.tools.reference import naive_lowpass
from helpers import GOLDEN

CASES = {
    "a": dict(in_channels=64, out_channels=64, kernel_size=3, padding=1, bias=False),
    "b": dict(in_channels=128, out_channels=256, kernel_size=1, padding=0, bias=True),
}
SHAPES = ["o64_i64_k3", "o128_i256_k1", "o256_i64_k1", "o64_i256_k1", "o128_i128_k3", "o512_i512_k3", "o256_i1024_k1"]


def load(name: str) -> dict:
    return torch.load(GOLDEN / name, weights_only=True)


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def official_group_map(groups: dict, name: str) -> torch.Tensor:
    """The README's lossless rebuild: exact radius key, searchsorted over kmax, then the listed ties."""
    out, inp, k = map(int, re.findall(r"\d+", name))
    rows, cols = out * k, inp * k
    iy = torch.arange(rows)
    iy = torch.where(iy < (rows + 1) // 2, iy, iy - rows)
    ix = torch.arange(cols // 2 + 1)
    key = (iy * cols).square()[:, None] + (ix * rows).square()[None, :]
    group = torch.searchsorted(groups[name + "_group_kmax"], key.flatten(), side="left").reshape(rows, -1)
    ties = groups[name + "_group_ties"].long()
    group[ties[:, 0], ties[:, 1]] = ties[:, 2]
    return group


@pytest.mark.parametrize("name", SHAPES)
def test_official_frequency_groups(name):
    groups = load("fdconv_groups.pt")
    out, inp, k = map(int, re.findall(r"\d+", name))
    ours = frequency_groups(out * k, inp * k, 64).long()
    expected = official_group_map(groups, name)
    if name + "_group" in groups:
        assert torch.equal(expected, groups[name + "_group"].long())
    assert torch.equal(ours, expected)
    if name in groups:  # the official `indices` buffer: group g lists its coefficients' (row, col)
        indices = groups[name].long()[0]
        assert torch.equal(ours[indices[0], indices[1]], torch.arange(64)[:, None].expand(64, indices.shape[-1]))
    stable = frequency_groups(out * k, inp * k, 64, order="stable").long()
    assert 0 < (stable != expected).sum() < 200  # the documented alternative differs only at tied radii


def test_official_fbm_masks_and_low_passes():
    masks = load("fdconv_fbm_masks.pt")
    k_list = tuple(masks["k_list"].tolist())
    for key, expected in masks.items():
        if not key.startswith("h"):
            continue
        height, width = map(int, key[1:].split("_w"))
        rows, cols = band_masks(height, width, k_list, "official")
        assert torch.equal(rows[:, :, None] & cols[:, None, :], expected), key
        x = torch.randn(2, 3, height, width, dtype=torch.float64)
        for j, k in enumerate(k_list):
            spectrum = torch.fft.rfft2(x, norm="ortho") * expected[j]
            torch.testing.assert_close(
                naive_lowpass(x, k, "official"),
                torch.fft.irfft2(spectrum, s=(height, width), norm="ortho"),
                rtol=0,
                atol=1e-12,
            )


def official_layer(case: str) -> FDConv:
    layer = FDConv(**CASES[case], kernel_num=64, dtype=torch.float64)
    layer.load_state_dict(load(f"fdconv_forward_{case}.pt")["state_dict"], strict=True)
    return layer


@pytest.mark.parametrize("case", ["a", "b"])
def test_official_checkpoint_computes_the_official_function(case):
    data = load(f"fdconv_forward_{case}.pt")
    layer = official_layer(case)
    close(layer.eval()(data["x"]), data["y_eval"])
    branch = load("fdconv_forward_weight_branch.pt")[case]
    close(layer(branch["x"]), branch["y_eval"])
    x = data["x"].clone().requires_grad_()
    y = layer.train()(x)
    close(y, data["y_train"])
    (y * data["g"]).sum().backward()
    close(x.grad, data["grad_x_train"])
    state = layer.state_dict()
    for key, value in data["bn_after_train"].items():
        torch.testing.assert_close(state[key], value, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["a", "b"])
@pytest.mark.parametrize("aggregation", ["weight", "feature"])
@pytest.mark.parametrize("synthesis", ["fft", "basis"])
def test_every_path_computes_the_official_function(case, aggregation, synthesis):
    data = load(f"fdconv_forward_{case}.pt")
    layer = FDConv(**CASES[case], kernel_num=64, aggregation=aggregation, synthesis=synthesis, dtype=torch.float64)
    layer.load_state_dict(data["state_dict"], strict=True)
    close(layer.eval()(data["x"]), data["y_eval"])


def test_exact_rules_are_reachable_and_differ():
    data = load("fdconv_forward_a.pt")
    expected = data["y_eval"]
    for option in (dict(freq_grouping="stable"), dict(fbm_masks="exact")):
        layer = FDConv(**CASES["a"], kernel_num=64, dtype=torch.float64, **option)
        layer.load_state_dict(data["state_dict"], strict=True)
        error = (layer.eval()(data["x"]) - expected).norm() / expected.norm()
        assert error > 0.01, option  # the README measures 7.9% and 21%


FREQFUSION = {  # golden file -> the constructor arguments of the authors' module that produced it
    "freqfusion_forward.pt": dict(hr_channels=64, lr_channels=128, feature_resample=True),
    # the SegNeXt copy, as its ham_head builds the head's last FreqFusion (the released SegNeXt + FreqFusion)
    "freqfusion_segnext.pt": dict(
        hr_channels=160,
        lr_channels=256,
        compressed_channels=104,
        feature_resample=True,
        hamming_window=False,
        direction_feat="sim",
    ),
}


@pytest.mark.parametrize("name", sorted(FREQFUSION))
def test_official_freqfusion_checkpoint(name):
    data = load(name)
    layer = FreqFusion(**FREQFUSION[name], dtype=torch.float64)
    layer.load_state_dict(data["state_dict"], strict=True)
    hr, lr = layer.eval()(data["hr_feat"], data["lr_feat"])
    comp_hr = layer.hr_channel_compressor(data["hr_feat"])
    mask = layer._filters(comp_hr, layer.lr_channel_compressor(data["lr_feat"]), data["lr_feat"])[0]
    torch.testing.assert_close(mask, data["mask_lr"], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(hr, data["hr_feat_out"], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(lr, data["lr_feat_out"], rtol=1e-12, atol=1e-13)


def test_segnext_freqfusion_needs_its_sampler_option():
    """The root file's sampler ('sim_concat') cannot hold the SegNeXt copy's weights: four shape mismatches."""
    kwargs = {**FREQFUSION["freqfusion_segnext.pt"], "direction_feat": "sim_concat"}
    with pytest.raises(RuntimeError, match="size mismatch") as error:
        FreqFusion(**kwargs, dtype=torch.float64).load_state_dict(load("freqfusion_segnext.pt")["state_dict"])
    assert str(error.value).count("size mismatch") == 4


@pytest.mark.parametrize("setting", ["default", "local"])
def test_official_qwen_fdlinear_checkpoint(setting):
    """The authors' FDLinear4Qwen: strict load, batch, packed (cu_seqlens) and row-wise inputs (README: 1e-10 of the
    maximum)."""
    from freqdyn import FDLinearQwen

    data = load("fdlinear_qwen.pt")
    inputs, case = data["inputs"], data[setting]
    layer = FDLinearQwen(64, 96, use_ksm_local=setting == "local", dtype=torch.float64).eval()
    layer.load_state_dict(case["state_dict"], strict=True)
    with torch.no_grad():
        outputs = {
            "y": layer(inputs["x"]),
            "y_packed": layer(inputs["x_packed"], cu_seqlens=inputs["cu_seqlens"]),
            "y_tokens2d": layer(inputs["x_tokens2d"]),
        }
    for key, out in outputs.items():
        expected = case[key]
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-10 * expected.abs().max().item(), msg=key)


def test_qwen_fdlinear_is_not_our_fdlinear():
    """Our FDLinear (FDConv with a 1x1 kernel) cannot hold the authors' Qwen state_dict."""
    from freqdyn import FDLinear

    with pytest.raises(RuntimeError):
        FDLinear(64, 96, kernel_num=4, dtype=torch.float64).load_state_dict(
            load("fdlinear_qwen.pt")["default"]["state_dict"]
        )
