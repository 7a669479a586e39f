import pytest
import torch

from freqdyn import MRFA, DropPath, LayerNorm2d, UniConvNetBlock
from helpers import gradcheck_module


def test_mrfa_receptive_field_grows_7_15_25():
    mrfa = MRFA(16)
    x = torch.randn(1, 16, 41, 41, requires_grad=True)
    radii = []
    for out in mrfa.forward_stages(x):
        (grad,) = torch.autograd.grad(out[0, :, 20, 20].sum(), x, retain_graph=True)
        support = (grad.abs().sum(1)[0] > 0).nonzero()
        radii.append((support - 20).abs().max().item())
    assert radii == [3, 7, 12]  # 7x7, then +9x9 -> 15x15, then +11x11 -> 25x25 windows


@pytest.mark.parametrize("dim,size", [(4, (5, 6)), (32, (9, 9)), (64, (1, 1))])
def test_mrfa_shapes_and_stage_widths(dim, size):
    stages = MRFA(dim).forward_stages(torch.randn(2, dim, *size))
    assert [s.shape[1] for s in stages] == [dim // 2, 3 * dim // 4, dim]
    assert all(s.shape[-2:] == size for s in stages)


def test_mrfa_gradcheck_and_bad_dims():
    assert gradcheck_module(MRFA(8, kernel_sizes=(3, 5, 7)).double(), torch.randn(1, 8, 6, 7, dtype=torch.float64))
    for dim in (6, 2, 0):
        with pytest.raises(ValueError, match="multiple of 4"):
            MRFA(dim)
    with pytest.raises(ValueError, match="expected 8 input channels"):
        MRFA(8)(torch.randn(1, 4, 5, 5))


def test_uniconvnet_block_residual_structure_and_state_dict():
    block = UniConvNetBlock(16, layer_scale_init=0.0).eval()
    x = torch.randn(2, 16, 7, 7)
    mid = x + block.mrfa(x)
    torch.testing.assert_close(block(x), mid + block.mlp(block.norm(mid)))
    scaled = UniConvNetBlock(16, layer_scale_init=1e-6)
    with torch.no_grad():
        scaled.gamma1.zero_()
        scaled.gamma2.zero_()
    torch.testing.assert_close(scaled(x), x, rtol=0, atol=0)
    clone = UniConvNetBlock(16, layer_scale_init=0.0).eval()
    clone.load_state_dict(block.state_dict())
    torch.testing.assert_close(clone(x), block(x), rtol=0, atol=0)


def test_uniconvnet_block_every_parameter_learns():
    block = UniConvNetBlock(16, layer_scale_init=0.5, drop_path=0.1)
    block(torch.randn(4, 16, 6, 6)).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


def test_drop_path_drops_whole_samples():
    drop = DropPath(0.5)
    x = torch.ones(64, 3, 2, 2)
    y = drop(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert (per_sample == 0).all(1).any() and (per_sample == 2).all(1).any()
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError, match="drop_prob"):
        DropPath(1.0)


def test_layer_norm2d_normalises_channels():
    norm = LayerNorm2d(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_()
        norm.bias.uniform_()
    x = torch.randn(2, 6, 3, 4)
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-6) * norm.weight[:, None, None] + norm.bias[:, None, None]
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)
