import pytest
import torch
import torch.nn as nn


def perturb_(module: nn.Module, scale: float = 0.5, seed: int = 0) -> nn.Module:
    """Move every attention / modulation parameter (and BN statistics) away from its neutral init."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in ("dft_weight", "weight", "bias"):
                continue
            p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * scale)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.add_(torch.randn(b.shape, generator=gen, dtype=torch.float64).to(b.dtype) * 0.1)
            elif name.endswith("running_var"):
                b.mul_(1 + torch.rand(b.shape, generator=gen, dtype=torch.float64).to(b.dtype))
    return module


def gradcheck_module(module: nn.Module, x: torch.Tensor, fast: bool = True) -> bool:
    """float64 gradcheck of ``module`` with respect to its input and every parameter."""
    names = [n for n, _ in module.named_parameters()]
    params = tuple(p.detach().requires_grad_() for _, p in module.named_parameters())

    def fn(inp, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps)), (inp,))

    return torch.autograd.gradcheck(fn, (x.requires_grad_(), *params), eps=1e-6, atol=1e-5, rtol=1e-4,
                                    fast_mode=fast)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
