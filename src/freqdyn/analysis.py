"""Analysis of dynamic layers: frequency responses of their kernels and effective receptive fields.

* :func:`kernel_bank` / :func:`frequency_responses` / :func:`response_similarity`: the FDConv paper's Fig. 1
  view. DY-Conv's K kernels have near-identical frequency responses; FDConv's disjoint frequency groups
  do not overlap.
* :func:`effective_receptive_field`: the RepLKNet / UniConvNet measurement, |d centre output / d input|.
* :func:`plot_frequency_responses` / :func:`plot_erf` write PNGs (needs matplotlib: ``freqdyn[analysis]``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from .layers import ArgumentTypeError, Attentions, ExpertConv2d, FourierDynamicBase, weight_to_matrix
from .layers.catalog import dynamic_layers
from .layers.kernel_warehouse import KWConvNd

HEADS = ("kernel", "channel", "filter", "spatial")


def kernel_bank(layer: nn.Module) -> Tensor:
    """The kernels a dynamic layer mixes, (K, O, I/groups, kh, kw): experts, FDConv's frequency-group kernels, or the
    M cells of a KernelWarehouse conv's warehouse (M, cell_out, cell_in, kh, kw) (1-D cells as 1 x k; a 3x3 conv's
    cells are 1x1 with the authors' spatial partition).
    """
    if isinstance(layer, ExpertConv2d):
        return layer.kernels().detach()
    if isinstance(layer, FourierDynamicBase):  # FDConv, FDLinear
        return layer.frequency_kernels().detach().flatten(0, 1)
    if isinstance(layer, KWConvNd):
        cells = layer.cells().detach()
        if cells.dim() > 5:
            raise ValueError(f"{type(layer).__name__}'s 3-D cells have no 2-D frequency response")
        return cells if cells.dim() == 5 else cells.unsqueeze(-2)
    raise ArgumentTypeError(f"no kernel bank for {type(layer).__name__} (expected a dynamic conv)")


def frequency_responses(kernels: Tensor, domain: str = "kernel", size: int = 32, max_pairs: int = 4096) -> Tensor:
    """|FFT| of each of the K kernels (K, O, I, kh, kw) -> (K, h, w), centred (fftshift).

    ``domain='kernel'``: each kh x kw kernel zero-padded to size x size, magnitudes averaged over (O, I)
    (over ``max_pairs`` evenly spaced (o, i) pairs for wider layers).
    ``domain='matrix'``: the rfft2 of the (O*kh, I*kw) weight matrix, FDConv's own Fourier domain.
    """
    kernels = kernels.to(torch.float64)
    if domain == "kernel":
        pairs = kernels.flatten(1, 2)  # (K, O * I, kh, kw)
        if pairs.shape[-2:] == (1, 1):  # a zero-padded 1x1 kernel's FFT is flat: |k| at every frequency
            return pairs.abs().mean(dim=1).expand(-1, size, size).contiguous()
        if pairs.shape[1] > max_pairs:  # evenly spaced (o, i) pairs: the mean is estimated, memory stays bounded
            pairs = pairs[:, torch.linspace(0, pairs.shape[1] - 1, max_pairs).long()]
        spectrum = torch.stack([torch.fft.fft2(bank, s=(size, size)).abs().mean(dim=0) for bank in pairs])
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


def plot_frequency_responses(
    rows: dict[str, Tensor], path: str | Path, max_kernels: int = 8, domain: str = "matrix"
) -> Path:
    """One row of |FFT| panels per entry of ``rows`` (name -> (K, h, w) responses), the first ``max_kernels`` of
    each bank, with a shared colour bar per row and the mean pairwise cosine similarity; writes a PNG.
    """
    plt = _pyplot()
    cols = min(max_kernels, max(r.shape[0] for r in rows.values()))
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.7 * cols + 1.2, 2.0 * len(rows) + 0.9), squeeze=False, layout="constrained"
    )
    # after fftshift: rows from -1/2 to 1/2 cycle per row (or pixel); the matrix's rfft keeps columns 0 to 1/2
    unit = ("cycles / column", "cycles / row") if domain == "matrix" else ("cycles / pixel (x)", "cycles / pixel (y)")
    extent = (0.0, 0.5, -0.5, 0.5) if domain == "matrix" else (-0.5, 0.5, -0.5, 0.5)
    for row, (name, responses) in enumerate(rows.items()):
        similarity = response_similarity(responses)
        vmax = float(responses[:cols].max())
        image = None
        for col in range(cols):
            ax = axes[row][col]
            if col < responses.shape[0]:
                image = ax.imshow(
                    responses[col].numpy(),
                    cmap="viridis",
                    vmin=0.0,
                    vmax=vmax,
                    aspect="auto",
                    origin="lower",
                    extent=extent,
                )
                ax.set_title(f"kernel {col + 1}", fontsize=7)
                ax.set_xticks([extent[0], 0.5] if domain == "matrix" else [-0.5, 0.0, 0.5])
                ax.set_yticks([-0.5, 0.0, 0.5] if col == 0 else [])
                ax.tick_params(labelsize=6, length=2)
                ax.set_xlabel(unit[0], fontsize=6)
            else:
                ax.axis("off")
        axes[row][0].set_ylabel(f"{name}\n(of {responses.shape[0]}; cos {similarity:.2f})\n{unit[1]}", fontsize=8)
        fig.colorbar(image, ax=list(axes[row]), shrink=0.9, label="|FFT| (weight units)")
    where = (
        "the (O*kh) x (I*kw) weight matrix, FDConv's Fourier domain"
        if domain == "matrix"
        else "each kh x kw kernel zero-padded"
    )
    fig.suptitle(
        f"Frequency responses of the kernels each layer mixes ({where}); "
        "cos = mean pairwise cosine similarity, 1 = alike, 0 = disjoint",
        fontsize=9,
    )
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_erf(maps: dict[str, Tensor], path: str | Path) -> Path:
    """ERF maps side by side (log10 scale, as in RepLKNet), each with a colour bar and pixel axes; writes a PNG."""
    plt = _pyplot()
    width = max(4.2 * len(maps), 6.0)  # one panel still leaves room for the title
    fig, axes = plt.subplots(1, len(maps), figsize=(width, 4.4), squeeze=False, layout="constrained")
    for ax, (name, erf) in zip(axes[0], maps.items(), strict=True):  # inferno: dark = little, bright = most
        height, width = erf.shape  # the output pixel sits at (height // 2, width // 2): offsets from it
        extent = (-width // 2 - 0.5, width - width // 2 - 0.5, height - height // 2 - 0.5, -height // 2 - 0.5)
        image = ax.imshow(torch.log10(erf + 1e-4).numpy(), cmap="inferno", vmin=-4.0, vmax=0.0, extent=extent)
        ax.set_title(f"{name}\nhalf the contribution: radius {erf_radius(erf)} px", fontsize=9)
        ax.set_xlabel("x offset from the output pixel (pixels)", fontsize=8)
        ax.set_ylabel("y offset (pixels)", fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.8, label="log10 of |gradient| / its maximum")
    fig.suptitle(
        "Effective receptive fields: |d centre output / d input|,\nnormalised to 1, log scale "
        "(bright = most contribution)",
        fontsize=9,
    )
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def attention_spread(model: nn.Module, x: Tensor) -> dict[str, dict[str, float]]:
    """What training made of each dynamic layer's attentions on input ``x``: per layer and head (kernel, channel,
    filter, spatial), the coefficient of variation (std / mean) of the head's values over the samples of ``x``
    and the head's entries. Every head of a fresh or converted layer is constant (neutral), so 0 means untrained;
    a trained layer selects, e.g. 0.3 = values spread by 30% around their mean.

    A KernelWarehouse conv's signed cell weights start one-hot (temperature 1: each kernel position takes its own
    cell, a static conv) instead: its one value, ``own_cell``, is the share of the weights' absolute sum on each
    position's own cell, 1 at that start and lower as positions mix the warehouse's other cells.
    """
    layers = dynamic_layers(model)
    seen: dict[str, Attentions | Tensor] = {}
    handles = []
    for name, layer in layers.items():
        heads = cast(nn.Module, layer.KSM_Global if isinstance(layer, FourierDynamicBase) else layer.attention)
        handles.append(heads.register_forward_hook(lambda module, args, out, name=name: seen.setdefault(name, out)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    spread = {}
    for name, att in seen.items():
        if isinstance(att, Tensor):  # KW's cell weights (B * mixtures, M)
            spread[name] = {"own_cell": _own_cell_share(cast(KWConvNd, layers[name]), att)}
            continue
        values = {head: getattr(att, head) for head in HEADS}
        spread[name] = {
            head: (v.std(unbiased=False) / v.mean().abs().clamp_min(1e-12)).item()
            for head, v in values.items()
            if v is not None and v.numel() > 1
        }
    return spread


def _own_cell_share(layer: KWConvNd, weights: Tensor) -> float:
    """Share of |cell weights| (B * mixtures, M) on each kernel position's own cell (its one-hot start)."""
    attention = layer.attention
    assert attention is not None  # it produced ``weights``
    own = attention.temp_bias.view(attention.mixtures, -1)[:, : weights.shape[1]]
    magnitude = weights.abs().view(-1, *own.shape)
    return (magnitude * own).sum().div(magnitude.sum().clamp_min(1e-12)).item()


def last_feature_map(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """A function x -> the last (N, C, H, W) activation that ``model`` computes (for the ERF of a classifier)."""

    def run(x: Tensor) -> Tensor:
        found: list[Tensor] = []

        def keep(module: nn.Module, inputs: tuple, out: object) -> None:
            if isinstance(out, Tensor) and out.dim() == 4 and min(out.shape[-2:]) > 1:  # not a pooled 1x1 map
                found.append(out)

        handles = [m.register_forward_hook(keep) for m in model.modules()]
        try:
            model(x)
        finally:
            for h in handles:
                h.remove()
        if not found:
            raise ValueError(f"{type(model).__name__} computes no (N, C, H, W) feature map")
        return found[-1]

    return run


def _synthetic_image(size: int) -> torch.Tensor:
    """A deterministic natural-ish RGB test pattern (1, 3, size, size): rings, a gradient and an edge."""
    axis = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    rings = torch.cos(12 * torch.sqrt(xx**2 + yy**2))
    edge = (xx > 0.2 * torch.sin(3 * yy)).float()
    return torch.stack([rings, yy, edge])[None]


def photo(size: int) -> torch.Tensor:
    """skimage's astronaut photo (1, 3, size, size) in [0, 1], or the synthetic test pattern without scikit-image."""
    try:
        from skimage import data
    except ImportError:
        return _synthetic_image(size)
    image = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    return nn.functional.interpolate(image, size=(size, size), mode="area")


class _SaturationWatch:
    """The forward hook of :func:`watch_saturation` on one KSM-Global module: a check every ``every`` training calls,
    one warning per layer.
    """

    def __init__(self, name: str, every: int, share: float) -> None:
        self.name, self.every, self.share, self.calls, self.warned = name, every, share, 0, False

    def __call__(self, module: nn.Module, args: tuple, att: Attentions) -> None:
        if not module.training or not torch.is_grad_enabled() or self.warned:
            return
        self.calls += 1
        if (self.calls - 1) % self.every:
            return
        saturated = cast(Callable[[Attentions, float], list[str]], module.saturated)
        heads = saturated(att, self.share)  # one host sync (KSM-Global's own test)
        if heads:
            self.warned = True
            warnings.warn(
                f"FDConv {self.name}: the KSM attention head(s) {', '.join(heads)} saturated (most values "
                "at a bound of their sigmoid, where gradients vanish): the layer's output and gradients "
                "fade. This happens at high learning rates; build the layers with temp=16, kernel_temp=16, "
                "fbm_temp=16 (see FDConv's docstring).",
                RuntimeWarning,
                stacklevel=2,
            )


def watch_saturation(model: nn.Module, every: int = 50, share: float = 0.5) -> list[RemovableHandle]:
    """Warn (``RuntimeWarning``, once per layer) when most values of a KSM head of an FDConv / FDLinear in ``model``
    sit at a bound of their sigmoid, where its gradients vanish (high learning rates: see :class:`freqdyn.FDConv`).

    Opt-in, as a forward hook on each layer's ``KSM_Global``: it checks the first training forward and every
    ``every``-th after it, and each check syncs the host once (``Tensor.item``), which the layers' own ``forward``
    never does (CUDA graphs and ``torch.compile`` capture them whole). Returns the hooks' handles (``.remove()``).

    Args:
        model: any module; its FDConv and FDLinear layers are watched.
        every: training forwards between two checks of a layer.
        share: the fraction of a head's values within 1e-3 of a bound that counts as saturated.

    Examples:
        >>> from freqdyn import FDConv
        >>> layer = FDConv(16, 16, 3, padding=1, kernel_num=4)
        >>> handles = watch_saturation(layer)
        >>> _ = layer(torch.randn(2, 16, 8, 8))  # a fresh layer: no warning
        >>> for handle in handles:
        ...     handle.remove()
    """
    handles = []
    for name, layer in dynamic_layers(model).items():
        attention = getattr(layer, "KSM_Global", None)
        if isinstance(attention, nn.Module) and callable(getattr(attention, "saturated", None)):
            handles.append(
                attention.register_forward_hook(_SaturationWatch(name or type(layer).__name__, every, share))
            )
    return handles
