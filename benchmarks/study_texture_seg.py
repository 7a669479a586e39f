"""What each module buys: texture segmentation of mosaics cut from real photos, accuracy against cost.

    python benchmarks/study_texture_seg.py [--quick] [--seeds 8] [--variants "encoder fdconv,block MRFA"] [--steps 400]
        [--out benchmarks/results/texture_seg]

Data (nothing downloaded): six grey photos shipped with scikit-image (brick, grass, gravel, moon, cell, the
Hubble deep field), each standardised to zero mean and unit variance, so that only texture tells them apart.
A mosaic is a 96 x 96 Voronoi layout of 3-6 regions, each filled from a random crop of one class's photo;
training mosaics are cut from the left half of every photo, test mosaics from the right half (no test pixel is
seen in training), the test set fixed by its own seed. Metrics on the test set: mIoU over the six classes and the
boundary F-score (boundary pixels matched within 2 pixels).

One encoder-decoder (stem stride 2, three residual stages of 32 / 64 / 128 channels at 1/2, 1/4, 1/8, a decoder of
width 64 back to 1/2, logits upsampled) in which only the part under study changes:

* encoder 3x3 convs (the stages' two convs per block): ``nn.Conv2d``, DY-Conv, CondConv, ODConv (4 experts each),
  FDConv (K=64) and its ablations FDW + KSM-Global, FDW + KSM (no FBM); each converted from the same plain
  network (``freqdyn.convert``), so every model starts from the same function. Attention norm: BatchNorm (the
  README's choice for 8 samples per batch);
* decoder fusion: bilinear upsampling + add (the baseline), FPN-style (+ a 3x3 conv after each add), FreqFusion;
* block: the two-3x3 residual block against MRFA at equal width.

* encoder KernelWarehouse (KW 1x, one warehouse per stage): its cells are shared, so it cannot start from the
  plain network's weights (the rest of the network is the same seed's); its temperature anneals 1 -> 0 over the first
  10% of the steps, as the authors' does over their first epochs.

Every model sees the same mosaics in the same order (one generator per seed), Adam (lr 2e-3) for ``--steps`` steps
of 8 mosaics. Every variant differs from the plain model (encoder conv, bilinear decoder, two-3x3 blocks) in one
part, so it is compared with it seed by seed: the **paired difference** of test mIoU and boundary F, with a 95%
t-interval over the seeds; a gain or a loss is stated only where the interval excludes zero. Reproducible on one
machine: deterministic algorithms, ``--threads`` (2) threads, recorded seeds; the machine line (CPU flags included)
is in the results, because float rounding differs between CPUs and training amplifies it. Time per training step is
measured afterwards, all models in one interleaved run. Writes ``results.csv`` / ``results.json`` (per model: runs,
means, paired differences and intervals, params, FLOPs, ms per step), ``accuracy_vs_cost.png`` and
``trained_frequency_responses.png`` (the FDConv paper's Fig. 1 on trained weights), and prints the tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from freqdyn import MRFA, FreqFusion, KWTemperatureSchedule, convert, profile
from freqdyn import analysis as fa
from freqdyn.layers.catalog import dynamic_layers
from freqdyn.tools.timing import interleaved_times_ms, machine_line

CLASSES = ("brick", "grass", "gravel", "moon", "cell", "hubble_deep_field")
SIZE, BATCH, WIDTHS, DECODER = 96, 8, (32, 64, 128), 64
ENCODERS: dict[str, tuple[str | None, dict]] = {
    "conv": (None, {}),
    "dyconv": ("dyconv", {"num_experts": 4}),
    "condconv": ("condconv", {"num_experts": 4}),
    "odconv": ("odconv", {"num_experts": 4}),
    "fdconv": ("fdconv", {"kernel_num": 64}),
    "fdconv: FDW+KSM-Global": ("fdconv", {"kernel_num": 64, "use_ksm_local": False, "use_fbm_if_k_in": ()}),
    "fdconv: FDW+KSM": ("fdconv", {"kernel_num": 64, "use_fbm_if_k_in": ()}),
    "kw": ("kw", {"cell_num_ratio": 1}),
}
VARIANTS = [(f"encoder {e}", e, "bilinear", "stack") for e in ENCODERS] + [
    ("decoder FPN", "conv", "fpn", "stack"),
    ("decoder FreqFusion", "conv", "freqfusion", "stack"),
    ("block MRFA", "conv", "bilinear", "mrfa"),
]
PLAIN = "encoder conv"  # the plain model: every variant differs from it in one part
PAIRED = [PLAIN, "encoder fdconv", "encoder dyconv", "encoder kw", "decoder FreqFusion", "block MRFA"]  # the default
QUICK = [PLAIN, "encoder fdconv", "decoder FreqFusion"]
T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)
"""Student's t 97.5% quantiles for 1..30 degrees of freedom (two-sided 95% intervals)."""


def paired_interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean of per-seed differences and its 95% t-interval (low, high); NaN bounds for a single seed."""
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    quantile = T975[len(diffs) - 2] if len(diffs) - 1 <= len(T975) else 1.96
    half = quantile * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def verdict(low: float, high: float) -> str:
    """What an interval supports: a gain, a loss, or no resolved difference."""
    if low > 0:
        return "gain"
    if high < 0:
        return "loss"
    return "not resolved"


def cpu_flags() -> str:
    """The vector extensions of this CPU that change float rounding (from /proc/cpuinfo; '' elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags)


def textures() -> list[np.ndarray]:
    """The six photos, grey float32, each standardised over its whole area."""
    from skimage import data
    from skimage.color import rgb2gray

    out = []
    for name in CLASSES:
        image = getattr(data, name)()
        image = rgb2gray(image) if image.ndim == 3 else image.astype(np.float64)
        out.append(((image - image.mean()) / image.std()).astype(np.float32))
    return out


def mosaics(photos: list[np.ndarray], split: str, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` mosaics (count, 1, SIZE, SIZE) and labels (count, SIZE, SIZE) from the ``split`` half of each photo."""
    rng = np.random.default_rng(seed)
    halves = [p[:, : p.shape[1] // 2] if split == "train" else p[:, p.shape[1] // 2 :] for p in photos]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = np.empty((count, 1, SIZE, SIZE), np.float32)
    labels = np.empty((count, SIZE, SIZE), np.int64)
    for n in range(count):
        regions = int(rng.integers(3, 7))
        centres = rng.random((regions, 2)) * SIZE
        classes = rng.choice(len(photos), size=regions, replace=regions > len(photos))
        warp = rng.normal(0, 6, (2, 4, 4))  # smooth jitter of the cell boundaries
        jitter = [np.kron(w, np.ones((SIZE // 4, SIZE // 4))) for w in warp]
        dist = (yy[None] + jitter[0] - centres[:, 0, None, None]) ** 2 + (
            xx[None] + jitter[1] - centres[:, 1, None, None]
        ) ** 2
        label = classes[dist.argmin(0)]
        image = np.empty((SIZE, SIZE), np.float32)
        for c in np.unique(label):
            half = halves[c]
            y0, x0 = rng.integers(0, half.shape[0] - SIZE), rng.integers(0, half.shape[1] - SIZE)
            crop = half[y0 : y0 + SIZE, x0 : x0 + SIZE]
            if split == "train":
                crop = np.rot90(crop, int(rng.integers(4)))
            image[label == c] = crop[label == c]
        images[n, 0], labels[n] = image, label
    return torch.from_numpy(images), torch.from_numpy(labels)


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class Block(nn.Module):
    """Residual block: two 3x3 convs (the encoder convs under study), or MRFA at the same width."""

    def __init__(self, width: int, kind: str) -> None:
        super().__init__()
        if kind == "mrfa":
            self.body: nn.Module = nn.Sequential(MRFA(width), nn.BatchNorm2d(width))
        else:
            self.body = nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class Segmenter(nn.Module):
    """(B, 1, H, W) -> logits (B, classes, H, W)."""

    def __init__(self, fusion: str, block: str, classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.fusion = fusion
        self.stem = conv_bn(1, WIDTHS[0], 2)
        self.down = nn.ModuleList([nn.Identity(), conv_bn(WIDTHS[0], WIDTHS[1], 2), conv_bn(WIDTHS[1], WIDTHS[2], 2)])
        self.stages = nn.ModuleList(Block(w, block) for w in WIDTHS)
        self.lateral = nn.ModuleList(nn.Conv2d(w, DECODER, 1) for w in WIDTHS)
        if fusion == "fpn":
            self.smooth = nn.ModuleList(conv_bn(DECODER, DECODER) for _ in WIDTHS[:-1])
        if fusion == "freqfusion":
            self.fuse = nn.ModuleList(FreqFusion(DECODER, DECODER, compressed_channels=16) for _ in WIDTHS[:-1])
        self.head = nn.Sequential(conv_bn(DECODER, DECODER), nn.Conv2d(DECODER, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x = self.stem(x)
        feats = []
        for down, stage in zip(self.down, self.stages, strict=True):
            x = stage(down(x))
            feats.append(x)
        top = self.lateral[-1](feats[-1])
        for i in (1, 0):
            hr = self.lateral[i](feats[i])
            if self.fusion == "freqfusion":
                hr_out, lr_out = self.fuse[i](hr, top)
                top = hr_out + lr_out
            else:
                top = hr + F.interpolate(top, size=hr.shape[-2:], mode="bilinear", align_corners=False)
                if self.fusion == "fpn":
                    top = self.smooth[i](top)
        return F.interpolate(self.head(top), size=size, mode="bilinear", align_corners=False)


def build(encoder: str, fusion: str, block: str, seed: int) -> nn.Module:
    """The variant, converted from the plain network of the same seed (every model starts from one function)."""
    torch.manual_seed(seed)
    model = Segmenter(fusion, block)
    kind, options = ENCODERS[encoder]
    if kind == "kw":  # one warehouse per stage for the stage's two convs
        stages = {f"stages.{i}.body.{j}": f"stage{i}" for i in range(len(WIDTHS)) for j in (0, 3)}
        report = convert(model, kind, stages=stages, **options)
        if len(report.replaced) != 2 * len(WIDTHS):
            raise RuntimeError(f"{encoder}: expected {2 * len(WIDTHS)} converted convs, got {report.replaced}")
    elif kind is not None:
        report = convert(model, kind, include=r"^stages\.\d\.body\.[03]$", **options)
        if len(report.replaced) != 2 * len(WIDTHS):
            raise RuntimeError(f"{encoder}: expected {2 * len(WIDTHS)} converted convs, got {report.replaced}")
    return model


def boundaries(labels: torch.Tensor) -> torch.Tensor:
    """Pixels whose right or lower neighbour has another label, (N, H, W) bool."""
    edge = torch.zeros_like(labels, dtype=torch.bool)
    edge[:, :, :-1] |= labels[:, :, 1:] != labels[:, :, :-1]
    edge[:, :-1, :] |= labels[:, 1:, :] != labels[:, :-1, :]
    return edge


def scores(pred: torch.Tensor, truth: torch.Tensor, tolerance: int = 2) -> tuple[float, float]:
    """mIoU over the classes present, and the boundary F-score within ``tolerance`` pixels."""
    ious = []
    for c in range(len(CLASSES)):
        union = ((pred == c) | (truth == c)).sum().item()
        if union:
            ious.append(((pred == c) & (truth == c)).sum().item() / union)
    p_edge, t_edge = boundaries(pred), boundaries(truth)

    def near(edge: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(edge[:, None].float(), 2 * tolerance + 1, 1, tolerance)[:, 0] > 0

    precision = (p_edge & near(t_edge)).sum().item() / max(p_edge.sum().item(), 1)
    recall = (t_edge & near(p_edge)).sum().item() / max(t_edge.sum().item(), 1)
    f_score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return statistics.fmean(ious), f_score


def train_and_test(
    model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor], steps: int
) -> tuple[float, float, float]:
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    images, labels = train
    model.train()
    schedule = KWTemperatureSchedule(model, epochs=1, steps_per_epoch=max(steps // 10, 1))  # no-op without KW layers
    start = time.perf_counter()
    for step in range(steps):
        schedule.step()
        rows = slice(step * BATCH, (step + 1) * BATCH)
        loss = F.cross_entropy(model(images[rows]), labels[rows])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(chunk).argmax(1) for chunk in test[0].split(16)])
    return (*scores(pred, test[1]), seconds)


def step_times(names: list[str], rounds: int) -> dict[str, float]:
    """Median ms of one training step per variant, all variants in one interleaved run."""
    batch = mosaics(textures(), "train", BATCH, 999)

    def step(model: nn.Module) -> Callable[[], None]:
        model.train()
        return lambda: F.cross_entropy(model(batch[0]), batch[1]).backward()

    spec = {name: (e, f, b) for name, e, f, b in VARIANTS}
    times = interleaved_times_ms({name: step(build(*spec[name], seed=0)) for name in names}, rounds)
    return {name: t[len(t) // 2] for name, t in times.items()}


def trained_spectra(models: dict[str, nn.Module], test: torch.Tensor, out: Path) -> list[str]:
    """The FDConv paper's Fig. 1 on trained weights: the frequency responses of the kernels each dynamic layer mixes
    (its second stage's first conv), their similarity, and how much its attentions vary over test mosaics."""
    lines, rows = [], {}
    for name, model in models.items():
        layer = model.stages[1].body[0]
        if not dynamic_layers(nn.Sequential(layer)):
            continue
        bank = fa.kernel_bank(layer)
        kernel_sim = fa.response_similarity(fa.frequency_responses(bank, "kernel"))
        rows[name] = fa.frequency_responses(bank, "matrix")
        spread = fa.attention_spread(model.eval(), test[:16]).get("stages.1.body.0", {})
        lines.append(
            f"| {name} | {bank.shape[0]} | {fa.response_similarity(rows[name]):.3f} | {kernel_sim:.3f} | "
            + ", ".join(f"{head} {value:.3f}" for head, value in spread.items())
            + " |"
        )
    if rows:
        fa.plot_frequency_responses(rows, out / "trained_frequency_responses.png")
    return lines


def plot(results: list[dict], out: Path) -> Path:
    """Paired differences from the plain model (95% intervals over the seeds) against the step time ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    for ax, metric, label in ((axes[0], "miou", "test mIoU"), (axes[1], "boundary_f", "test boundary F (2 px)")):
        for r in results:
            if r["model"] == PLAIN:
                continue
            mean, low, high = r[f"{metric}_diff"], r[f"{metric}_diff_low"], r[f"{metric}_diff_high"]
            yerr = None if math.isnan(low) else [[mean - low], [high - mean]]
            ax.errorbar(r["step_ms_ratio"], mean, yerr=yerr, fmt="o", capsize=3)
            ax.annotate(r["model"], (r["step_ms_ratio"], mean), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("training step time / plain model's (interleaved run)")
        ax.set_ylabel(f"{label}: paired difference from the plain model (95% interval)")
        ax.set_xscale("log")
        ax.set_xticks([1, 1.5, 2, 3, 4], ["1x", "1.5x", "2x", "3x", "4x"])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    fig.suptitle("Texture segmentation of mosaics of real photos: what each module buys against what it costs")
    path = out / "accuracy_vs_cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summarise(name: str, runs: list[tuple[float, float, float]], plain: list[tuple[float, float, float]]) -> dict:
    """Per-model numbers: the runs, their means and spreads, and the paired differences from the plain model."""
    miou, boundary_f, _ = zip(*runs, strict=True)
    row = {
        "model": name,
        "seeds": len(miou),
        "miou_mean": statistics.fmean(miou),
        "miou_std": statistics.pstdev(miou),
        "boundary_f_mean": statistics.fmean(boundary_f),
        "boundary_f_std": statistics.pstdev(boundary_f),
        "miou_runs": list(miou),
        "boundary_f_runs": list(boundary_f),
    }
    for index, metric in ((0, "miou"), (1, "boundary_f")):
        diffs = [run[index] - base[index] for run, base in zip(runs, plain, strict=True)]
        mean, low, high = paired_interval(diffs)
        row |= {
            f"{metric}_diff": mean,
            f"{metric}_diff_low": low,
            f"{metric}_diff_high": high,
            f"{metric}_verdict": "plain" if name == PLAIN else verdict(low, high),
        }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{len(QUICK)} models, 2 seeds, 20 steps (a smoke run)")
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 (each model trained once per seed)")
    parser.add_argument(
        "--variants",
        help=f"comma-separated models (default: {', '.join(PAIRED)}; the plain model is "
        f"always run, as every difference is paired with it); any of: "
        f"{', '.join(v[0] for v in VARIANTS)}",
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--test", type=int, default=64, help="test mosaics")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (results depend on it)")
    parser.add_argument("--out", default="benchmarks/results/texture_seg")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.test = 2, 20, 16
    spec = {name: (e, f, b) for name, e, f, b in VARIANTS}
    chosen = QUICK if args.quick else (PAIRED if not args.variants else [v.strip() for v in args.variants.split(",")])
    unknown = [name for name in chosen if name not in spec]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(spec)}")
    names = [PLAIN, *[name for name in chosen if name != PLAIN]]
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = textures()
    test = mosaics(photos, "test", args.test, 12345)
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    trained: dict[str, nn.Module] = {}
    seeds = list(range(args.seeds))
    jobs = [(seed, name) for seed in seeds for name in names]
    data: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for seed, name in tqdm(jobs, desc="training", unit="model"):
        if seed not in data:
            data = {seed: mosaics(photos, "train", args.steps * BATCH, 1000 + seed)}
        model = build(*spec[name], seed=seed)
        runs[name].append(train_and_test(model, data[seed], test, args.steps))
        if seed == 0:
            trained[name] = model
    ms = step_times(names, 2 if args.quick else 5)
    results = []
    for name in names:
        row = summarise(name, runs[name], runs[PLAIN])
        counted = profile(build(*spec[name], seed=0).eval(), (1, 1, SIZE, SIZE))
        row |= {
            "params": counted.params,
            "gflops": counted.flops / 1e9,
            "step_ms": ms[name],
            "step_ms_ratio": ms[name] / ms[PLAIN],
        }
        results.append(row)
    if not all(math.isfinite(r["miou_mean"]) and math.isfinite(r["step_ms"]) for r in results):
        raise RuntimeError("non-finite results")
    machine = f"{machine_line()}, CPU flags: {cpu_flags() or 'unknown'}"
    keys = [k for k in results[0] if not k.endswith("_runs")]
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    (out / "results.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "seeds": seeds,
                "threads": args.threads,
                "deterministic": True,
                "steps": args.steps,
                "batch": BATCH,
                "test_mosaics": args.test,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    plot(results, out)
    print(
        f"{machine}; seeds {seeds[0]}..{seeds[-1]}, {args.steps} steps of {BATCH} mosaics, {args.test} test mosaics\n"
    )
    print(
        "Paired differences from the plain model (same seed, data order and init), mean and 95% t-interval over "
        "the seeds; a gain or loss only where the interval excludes 0:\n"
    )
    print(
        "| model | mIoU | Δ mIoU [95% CI] | Δ boundary F [95% CI] | verdict (mIoU / boundary F) | params | GFLOPs "
        "| ms / step | vs plain |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if r["model"] == PLAIN:
            deltas = "(plain) | (plain) | —"
        else:
            deltas = (
                f"{r['miou_diff']:+.3f} [{r['miou_diff_low']:+.3f}, {r['miou_diff_high']:+.3f}] | "
                f"{r['boundary_f_diff']:+.3f} [{r['boundary_f_diff_low']:+.3f}, {r['boundary_f_diff_high']:+.3f}]"
                f" | {r['miou_verdict']} / {r['boundary_f_verdict']}"
            )
        print(
            f"| {r['model']} | {r['miou_mean']:.3f} ± {r['miou_std']:.3f} | {deltas} | {r['params'] / 1e6:.3f}M | "
            f"{r['gflops']:.3f} | {r['step_ms']:.0f} | {r['step_ms_ratio']:.2f}x |"
        )
    lines = trained_spectra({n: m for n, m in trained.items() if n.startswith("encoder")}, test[0], out)
    if lines:
        print(
            "\nTrained kernels of stages.1 (the FDConv paper's Fig. 1 on trained weights; cos = mean pairwise cosine "
            "similarity of the mixed kernels' frequency responses, 1 = alike) and the spread of their attentions "
            "over the test mosaics (std / mean; 0 = constant):\n"
        )
        print("| model | kernels | weight-matrix spectrum cos | kernel spectrum cos | attention spread |")
        print("|---|---|---|---|---|")
        print("\n".join(lines))
    print(f"\nwrote {out / 'results.csv'}, {out / 'results.json'}, {out / 'accuracy_vs_cost.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
