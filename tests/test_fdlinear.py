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
    for bad in ([0, 3, 9], [1, 8], [0, 5, 3, 8], [0, 3, 3, 8]):
        with pytest.raises(ValueError, match="cu_seqlens"):
            layer(rows, cu_seqlens=torch.tensor(bad))


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
