"""Shared test helpers: the repository's folders, conv cases, builders, attention perturbation and a float64
gradcheck."""

from pathlib import Path

import torch
import torch.nn as nn

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
GOLDEN = TESTS / "golden"
PICKLES = TESTS / "pickles"

# (in, out, kernel, stride, padding, dilation, groups, bias, padding_mode, H, W)
CONV_CASES = [
    (32, 48, 3, 1, 1, 1, 1, True, "zeros", 9, 11),
    (33, 40, 3, 2, 1, 1, 1, False, "zeros", 13, 7),  # odd I*k, stride 2
    (24, 24, 3, 1, 2, 2, 1, True, "zeros", 10, 10),  # dilation
    (32, 64, 3, 1, 1, 1, 4, True, "zeros", 8, 9),  # groups
    (32, 32, 3, 1, 1, 1, 32, True, "zeros", 7, 7),  # depthwise
    (48, 20, 1, 1, 0, 1, 1, True, "zeros", 5, 6),  # 1x1
    (24, 32, (3, 1), 1, (1, 0), 1, 1, True, "zeros", 9, 5),  # non-square
    (24, 32, (1, 3), (2, 1), (0, 1), 1, 1, True, "zeros", 9, 5),
    (20, 28, 3, 1, "same", 1, 1, True, "reflect", 6, 9),
    (20, 28, 3, 1, 1, 1, 2, True, "circular", 7, 5),
    (20, 28, 3, 1, "valid", 1, 1, True, "zeros", 6, 9),
]
IDS = [f"c{i}" for i in range(len(CONV_CASES))]


def make_conv(case, dtype=torch.float32):
    i, o, k, s, p, d, g, b, mode, _, _ = case
    return nn.Conv2d(i, o, k, s, p, d, g, b, mode, dtype=dtype)


def make_input(case, batch=3, dtype=torch.float32):
    return torch.randn(batch, case[0], case[9], case[10], dtype=dtype)


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
        return torch.func.functional_call(module, dict(zip(names, ps, strict=True)), (inp,))

    return torch.autograd.gradcheck(fn, (x.requires_grad_(), *params), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast)


def public_layers() -> set[str]:
    """Names of every public ``nn.Module`` class of freqdyn (``freqdyn.__all__``)."""
    import freqdyn

    return {
        name
        for name in freqdyn.__all__
        if isinstance(getattr(freqdyn, name), type) and issubclass(getattr(freqdyn, name), nn.Module)
    }


def assert_covered(tested: set[str], opted_out: dict[str, str]) -> None:
    """Every public layer is tested by a cross-cutting module or opted out of it with a reason: a new layer fails
    here until it is added to one of them."""
    missing = public_layers() - tested - set(opted_out)
    assert not missing, f"public layers neither tested here nor opted out: {sorted(missing)}"
    assert not tested & set(opted_out), "a layer both tested and opted out"
    assert all(opted_out.values()), "an opt-out needs its reason"
