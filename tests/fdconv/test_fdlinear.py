import io

import pytest
import torch
import torch.nn as nn

from freqdyn import FDLinear
from helpers import gradcheck_module, perturb_


@pytest.mark.parametrize("shape", [(3, 40), (2, 7, 40), (2, 3, 5, 40)])
@pytest.mark.parametrize("kernel_num", [1, 16])
def test_from_linear_equals_linear_at_neutral(shape, kernel_num):
    linear = nn.Linear(40, 24)
    layer = FDLinear.from_linear(linear, kernel_num=kernel_num)
    x = torch.randn(shape)
    torch.testing.assert_close(layer(x), linear(x), rtol=0, atol=1e-5)


def test_matches_per_sample_weights():
    layer = perturb_(FDLinear(20, 30, kernel_num=8), seed=1).eval()
    x = torch.randn(4, 6, 20)
    y = layer(x)
    for b in range(4):
        tokens = x[b]
        pooled = tokens.mean(0, keepdim=True)
        att = layer.KSM_Global(pooled)
        weight = layer.dynamic_weight(att.kernel)[0, :, :, 0, 0]
        weight = weight * layer.KSM_Local(pooled)[0, :, :, 0, 0] * att.channel[0][None] * att.filter[0][:, None]
        torch.testing.assert_close(y[b], tokens @ weight.t() + layer.bias, rtol=1e-5, atol=1e-5)


def test_gradcheck():
    layer = perturb_(FDLinear(6, 5, kernel_num=3, param_ratio=2, dtype=torch.float64), seed=2).train()
    assert gradcheck_module(layer, torch.randn(2, 3, 6, dtype=torch.float64))


def test_state_dict_round_trip_and_errors():
    layer = perturb_(FDLinear(20, 30, kernel_num=8), seed=3).eval()
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    clone = FDLinear(20, 30, kernel_num=8).eval()
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(2, 4, 20)
    assert torch.equal(clone(x), layer(x))
    with pytest.raises(ValueError, match="20 input features"):
        layer(torch.randn(2, 4, 21))
    with pytest.raises(ValueError, match="floating-point"):
        layer(torch.ones(2, 20, dtype=torch.int32))
    with pytest.raises(ValueError):
        layer(torch.randn(20))


def test_qwen_fdlinear_input_forms_agree():
    """Packed sequences equal each segment run alone as a batch of one; rows without cu_seqlens equal a batch of
    one-token samples."""
    from freqdyn import FDLinearQwen

    torch.manual_seed(3)
    layer = perturb_(FDLinearQwen(24, 40, use_ksm_local=True, dtype=torch.float64)).eval()
    segments = [torch.randn(n, 24, dtype=torch.float64) for n in (3, 1, 4)]
    packed = layer(torch.cat(segments), cu_seqlens=torch.tensor([0, 3, 4, 8]))
    alone = torch.cat([layer(s[None])[0] for s in segments])
    torch.testing.assert_close(packed, alone, rtol=1e-12, atol=1e-12)
    rows = torch.cat(segments)
    torch.testing.assert_close(layer(rows), layer(rows[:, None])[:, 0], rtol=1e-12, atol=1e-12)
    for bad in ([0, 3, 9], [1, 8], [0, 5, 3, 8], [-1, 8], [0], [0.0, 8.0], "08", 8):
        with pytest.raises(ValueError, match="cu_seqlens"):
            layer(rows, cu_seqlens=bad)
    with pytest.raises(ValueError, match="cu_seqlens"):
        layer(rows, cu_seqlens=torch.tensor([0.0, 8.0]))


@pytest.mark.parametrize("form", ["tensor", "list", "tuple"])
def test_qwen_fdlinear_skips_empty_segments_as_the_authors_forward_does(form):
    """An empty segment holds no token: it is skipped (the authors' loop over segments skips it), so the output
    equals the packed forward without it; cu_seqlens may be a tensor or a list / tuple of ints."""
    from freqdyn import FDLinearQwen

    torch.manual_seed(4)
    layer = perturb_(FDLinearQwen(24, 40, dtype=torch.float64)).eval()
    segments = [torch.randn(n, 24, dtype=torch.float64) for n in (3, 4)]
    alone = torch.cat([layer(s[None])[0] for s in segments])
    bounds = [0, 0, 3, 3, 7, 7]
    given = {"tensor": torch.tensor(bounds), "list": bounds, "tuple": tuple(bounds)}[form]
    torch.testing.assert_close(layer(torch.cat(segments), cu_seqlens=given), alone, rtol=1e-12, atol=1e-12)


def test_hugging_face_style_mlp_converts_to_the_qwen_fdlinear():
    """convert(model, 'fdlinear_qwen') replaces a Qwen2-style MLP's projections; neutral at conversion."""
    from freqdyn import FDLinearQwen, convert

    class MLP(nn.Module):  # transformers' Qwen2MLP: down(act(gate(x)) * up(x))
        def __init__(self) -> None:
            super().__init__()
            self.gate_proj, self.up_proj = nn.Linear(32, 48, bias=False), nn.Linear(32, 48, bias=False)
            self.down_proj = nn.Linear(48, 32, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))

    mlp = MLP()
    x = torch.randn(2, 7, 32)
    expected = mlp(x)
    report = convert(mlp, "fdlinear_qwen")
    assert sorted(report.replaced) == ["down_proj", "gate_proj", "up_proj"]
    assert all(isinstance(m, FDLinearQwen) for m in (mlp.gate_proj, mlp.up_proj, mlp.down_proj))
    torch.testing.assert_close(mlp(x), expected, rtol=1e-5, atol=1e-5)


def _authors_qwen_formula(state: dict, x: torch.Tensor, param_ratio: int, kernel_num: int) -> torch.Tensor:
    """The authors' FDLinear4Qwen forward for (B, N, I) inputs, from its state_dict, written from their formula:
    W_b = irfft2(sum_{p,g} alpha * 2 sigmoid(kernel_fc(h))[p*K + g] * dft_weight[p] on group g), alpha =
    min(I, O) // 2 * P, then W_b * filter (rows) * channel (columns); h = relu(RMSNorm(fc(mean over tokens)))."""
    sig = torch.sigmoid
    out_f, in_f = state["filter_fc.weight"].shape[0], state["channel_fc.weight"].shape[0]
    pooled = x.mean(1)
    z = pooled @ state["fc.weight"].t()
    h = torch.relu(z * torch.rsqrt(z.square().mean(-1, keepdim=True) + 1e-6) * state["norm.weight"])
    channel = 2 * sig(h @ state["channel_fc.weight"].t() + state["channel_fc.bias"])
    filter_ = 2 * sig(h @ state["filter_fc.weight"].t() + state["filter_fc.bias"])
    kernel = 2 * sig(h @ state["kernel_fc.weight"].t() + state["kernel_fc.bias"])  # (B, P * K), p-major
    alpha = min(in_f, out_f) // 2 * param_ratio
    groups = state["freq_group"].long()  # (O, I // 2 + 1): the group of each coefficient
    onehot = torch.stack([(groups == g) for g in range(kernel_num)]).to(x.dtype)  # (K, O, I // 2 + 1)
    dft = state["dft_weight"]  # (P, O, I // 2 + 1, 2)
    weights = []
    for b in range(x.shape[0]):
        att = kernel[b].reshape(param_ratio, kernel_num)
        spectrum = alpha * torch.einsum("pg,grc,prcz->rcz", att, onehot, dft)
        w = torch.fft.irfft2(torch.complex(spectrum[..., 0], spectrum[..., 1]), s=(out_f, in_f))
        weights.append(w * filter_[b][:, None] * channel[b][None, :])
    return torch.einsum("bni,boi->bno", x, torch.stack(weights)) + state["bias"]


@pytest.mark.parametrize("param_ratio", [1, 2, 4])
def test_qwen_official_ratio_scaling_is_the_authors_formula(param_ratio):
    """ratio_scaling='official' computes the authors' Qwen function at every P (their alpha has P, their kernel
    attention is 2 sigmoid without 1 / (P * K)); the default 'mean' computes 1 / P ** 2 of it."""
    from freqdyn import FDLinearQwen

    torch.manual_seed(5)
    layer = perturb_(FDLinearQwen(24, 40, param_ratio=param_ratio, ratio_scaling="official", dtype=torch.float64))
    layer.eval()
    with torch.no_grad():
        layer.dft_weight.add_(torch.randn_like(layer.dft_weight) * layer.dft_weight.std())  # copies differ
    state = {k.removeprefix("KSM_Global."): v for k, v in layer.state_dict().items()}
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    expected = _authors_qwen_formula(state, x, param_ratio, layer.kernel_num)
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
    mean = FDLinearQwen(24, 40, param_ratio=param_ratio, dtype=torch.float64).eval()
    mean.load_state_dict(layer.state_dict())
    no_bias = expected - state["bias"]
    torch.testing.assert_close(mean(x) - state["bias"], no_bias / param_ratio**2, rtol=1e-10, atol=1e-10)
