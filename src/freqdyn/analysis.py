"""Analysis of dynamic layers: frequency responses of their kernels and effective receptive fields.

* :func:`kernel_bank` / :func:`frequency_responses` / :func:`response_similarity`: the FDConv paper's Fig. 1
  view. DY-Conv's K kernels have near-identical frequency responses; FDConv's disjoint frequency groups
  do not overlap.
* :func:`effective_receptive_field`: the RepLKNet / UniConvNet measurement, |d centre output / d input|.
* :func:`plot_frequency_responses` / :func:`plot_erf` write PNGs (needs matplotlib: ``freqdyn[analysis]``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor

from .layers import ExpertConv2d, FDConv
from .layers.fourier_weight import weight_to_matrix


def kernel_bank(layer: nn.Module) -> Tensor:
    """The kernels a dynamic layer mixes, (K, O, I/groups, kh, kw): experts, or FDConv's frequency-group kernels."""
    if isinstance(layer, ExpertConv2d):
        return layer.kernels().detach()
    if isinstance(layer, FDConv) and layer.is_dynamic:
        return layer.frequency_kernels().detach().flatten(0, 1)
    raise ValueError(f"no kernel bank for {type(layer).__name__} (expected a dynamic conv)")


def frequency_responses(kernels: Tensor, domain: str = "kernel", size: int = 32) -> Tensor:
    """|FFT| of each of the K kernels (K, O, I, kh, kw) -> (K, h, w), centred (fftshift).

    ``domain='kernel'``: each kh x kw kernel zero-padded to size x size, magnitudes averaged over (O, I).
    ``domain='matrix'``: the rfft2 of the (O*kh, I*kw) weight matrix, FDConv's own Fourier domain.
    """
    kernels = kernels.to(torch.float64)
    if domain == "kernel":
        spectrum = torch.fft.fft2(kernels, s=(size, size)).abs().mean(dim=(1, 2))
        return torch.fft.fftshift(spectrum, dim=(-2, -1))
    if domain == "matrix":
        matrices = torch.stack([weight_to_matrix(k) for k in kernels])
        return torch.fft.fftshift(torch.fft.rfft2(matrices).abs(), dim=-2)
    raise ValueError(f"domain must be 'kernel' or 'matrix', got {domain!r}")


def response_similarity(responses: Tensor) -> float:
    """Mean pairwise cosine similarity of the K flattened responses (1 = identical shapes, 0 = disjoint)."""
    flat = responses.flatten(1)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    gram = flat @ flat.t()
    k = flat.shape[0]
    if k < 2:
        raise ValueError("need at least two kernels to compare")
    return ((gram.sum() - gram.diagonal().sum()) / (k * (k - 1))).item()


def effective_receptive_field(model: Callable[[Tensor], Tensor], inputs: Tensor) -> Tensor:
    """ERF map (H, W) in [0, 1]: |d sum_c out[:, c, centre] / d input| summed over channels and samples.

    ``inputs`` (N, C, H, W), e.g. real images; the output map's centre pixel is used, as in RepLKNet.
    """
    x = inputs.detach().clone().requires_grad_(True)
    out = model(x)
    if out.dim() != 4:
        raise ValueError(f"the model must return a (N, C, H, W) map, got shape {tuple(out.shape)}")
    centre = out[:, :, out.shape[2] // 2, out.shape[3] // 2].sum()
    (grad,) = torch.autograd.grad(centre, x)
    erf = grad.abs().sum(dim=(0, 1))
    return erf / erf.max().clamp_min(1e-12)


def erf_radius(erf: Tensor, mass: float = 0.5) -> int:
    """Half-width r of the smallest centred (2r+1)^2 window holding ``mass`` of the ERF's total contribution."""
    height, width = erf.shape
    cy, cx = height // 2, width // 2
    total = erf.sum()
    for r in range(max(height, width)):
        window = erf[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1]
        if window.sum() >= mass * total:
            return r
    return max(height, width)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plots need matplotlib: pip install 'freqdyn[analysis]'") from err
    return plt


def plot_frequency_responses(rows: dict[str, Tensor], path: str | Path, max_kernels: int = 8) -> Path:
    """One row of |FFT| panels per entry of ``rows`` (name -> (K, h, w) responses); writes a PNG."""
    plt = _pyplot()
    cols = min(max_kernels, max(r.shape[0] for r in rows.values()))
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.8 * len(rows)), squeeze=False)
    for row, (name, responses) in enumerate(rows.items()):
        similarity = response_similarity(responses)
        for col in range(cols):
            ax = axes[row][col]
            ax.axis("off")
            if col < responses.shape[0]:
                ax.imshow(responses[col].numpy(), cmap="viridis")
        axes[row][0].set_title(f"{name}: mean cosine {similarity:.2f}", loc="left", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_erf(maps: dict[str, Tensor], path: str | Path) -> Path:
    """ERF maps side by side (log scale, as in RepLKNet); writes a PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(maps), figsize=(3 * len(maps), 3.2), squeeze=False)
    for ax, (name, erf) in zip(axes[0], maps.items()):
        ax.imshow(torch.log10(erf + 1e-4).numpy(), cmap="RdYlGn")
        ax.set_title(f"{name}\n50% mass radius {erf_radius(erf)}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
