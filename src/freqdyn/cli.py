"""``freqdyn`` command line: ``freqdyn demo`` is the project's main job."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn as nn

from . import analysis
from .checkpoint import CheckpointFileError, checkpoint_state, fitted_state, held_module, load_file
from .convert import KERNEL_WAREHOUSE, convert
from .layers import KWConv2d
from .layers.catalog import attention_keys
from .targets import CONV_TARGETS, TARGETS, paper_layers
from .tools.models import TorchvisionPairError, build_model, import_torchvision
from .tools.overhead import BOTTLENECK_CONVS, PAPER_SETTINGS, format_overhead, param_overhead
from .tools.timing import interleaved_times_ms, unsteady
from .version import __version__

MIN_FIT = 0.9  # freqdyn analyze refuses a checkpoint that holds less of the model's keys

T = TypeVar("T")


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, except the ``None`` defaults whose help already says what happens."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return (action.help or "") if action.default is None else super()._get_help_string(action) or ""


def progress(items: Sequence[T], label: str) -> Iterator[T]:
    """Yield ``items`` with a tqdm progress bar on stderr when it is a terminal (none in piped logs)."""
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm comes with the extras; the core needs only torch and numpy
        return iter(items)
    return iter(tqdm(items, desc=label, file=sys.stderr, disable=None, leave=False))


def _time_layers(kernel_num: int, batch: int, channels: int, size: int, train: bool, rounds: int = 5) -> None:
    """Print the time of one 3x3 C -> C layer of each kind against ``nn.Conv2d`` on this machine: medians of
    ``rounds`` rounds that run every layer in turn, as ratios with their [min-max] over the rounds.
    """
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    x = torch.randn(batch, channels, size, size)
    # KW (4x) cannot start from conv's weight (its cells are shared): a layer with a warehouse of its own
    kw = KWConv2d.standalone(channels, channels, 3, padding=1, cell_num_ratio=4)
    layers = {"nn.Conv2d": conv, **paper_layers(conv, kernel_num), "KW (4x)": kw}
    mode = "forward + backward (train)" if train else "inference"
    print(
        f"\nOne 3x3 layer, {channels} -> {channels} channels, batch {batch} at {size}x{size}, {mode} on this "
        f"machine ({torch.get_num_threads()} threads):"
    )

    def call(layer: nn.Module):
        layer.train(train)
        if train:
            return lambda: layer(x).sum().backward()
        return lambda: _no_grad_call(layer, x)

    times = interleaved_times_ms({name: call(m) for name, m in layers.items()}, rounds)
    base = times["nn.Conv2d"]
    for name, t in times.items():
        median = t[len(t) // 2]
        print(
            f"  {name:<16}{median:>8.1f} ms  ({median / base[len(base) // 2]:.2f}x nn.Conv2d, "
            f"rounds {t[0] / base[len(base) // 2]:.2f}x-{t[-1] / base[len(base) // 2]:.2f}x)"
        )
    for name, spread in unsteady(times).items():
        print(
            f"  warning: the rounds of {name} differ by {spread:.1f}x: the machine's load changed during the run, "
            "so these ratios are unreliable; rerun on a quiet machine (or with more rounds)"
        )


def _no_grad_call(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return layer(x)


def bench(args: argparse.Namespace) -> int:
    """``freqdyn bench``: time one layer of each kind against ``nn.Conv2d``."""
    _time_layers(args.kernel_num, args.batch, args.channels, args.size, args.train)
    return 0


def demo(args: argparse.Namespace) -> int:
    """``freqdyn demo``: the paper's overhead table, the neutral-attention check, layer timings and the plots."""
    torchvision = import_torchvision()
    if torchvision is None:
        print("freqdyn demo needs torchvision: pip install 'freqdyn[dev]'", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    print("Parameter overhead on ResNet-50, measured here by conversion, next to the FDConv paper's Table 1:")
    rows = [param_overhead((setting,))[0] for setting in progress(PAPER_SETTINGS, "converting ResNet-50")]
    print(format_overhead(rows))
    model = torchvision.models.resnet50().eval()
    image = analysis.photo(224)
    with torch.no_grad():
        reference = model(image)
    report = convert(model, "fdconv", include=BOTTLENECK_CONVS, kernel_num=args.kernel_num)
    print(f"\nResNet-50 -> FDConv (kernel_num={args.kernel_num}): {report}")
    with torch.no_grad():
        out = model(image)
    print(
        f"Neutral-attention check on skimage's astronaut photo (224x224): max |logit difference| vs the original "
        f"ResNet-50 = {(out - reference).abs().max().item():.2e}"
    )
    _time_layers(args.kernel_num, 8, 64, 56, train=False)
    print()
    return analyze(args)


def _user_model(args: argparse.Namespace) -> nn.Module:
    """The model of ``freqdyn analyze``: ``--model`` built by name, converted with ``--to``, ``--checkpoint`` loaded
    into it; or, without ``--model``, the model an ultralytics ``--checkpoint`` holds.
    """
    if not args.model:
        held = held_module(load_file(args.checkpoint, args.trust_checkpoint))
        if held is None:
            raise ValueError(f"{args.checkpoint} holds a state_dict, not a model: name its model with --model")
        print(f"loaded the model {args.checkpoint} holds ({type(held).__name__})")
        return held.float().eval()
    checkpoint = load_file(args.checkpoint, args.trust_checkpoint) if args.checkpoint else None
    model = build_model(args.model).eval()
    if args.to != "none":
        options = (
            {"kernel_num": args.kernel_num}
            if args.to == "fdconv"
            else {"cell_num_ratio": args.cell_num_ratio}
            if args.to == KERNEL_WAREHOUSE
            else {}
        )
        include = BOTTLENECK_CONVS if "resnet" in args.model and args.to in CONV_TARGETS else None
        print(f"{args.model} -> {args.to}: {convert(model, args.to, include=include, **options)}")
    if checkpoint is not None:
        held = held_module(checkpoint)
        state = held.float().state_dict() if held is not None else checkpoint_state(checkpoint)[0]
        state, prefix, skipped = fitted_state(state, model)
        result = model.load_state_dict(state, strict=False)
        where = f" (the keys under '{prefix}')" if prefix else ""
        attention = attention_keys(model)  # a plain checkpoint cannot hold these; they start neutral
        own = [k for k in model.state_dict() if k not in attention]
        found = len(own) - sum(k not in attention for k in result.missing_keys)
        if found < MIN_FIT * len(own):
            raise ValueError(
                f"{args.checkpoint}{where} does not fit {args.model}"
                f"{'' if args.to == 'none' else ' -> ' + args.to}: it holds {found} of the model's "
                f"{len(own)} keys ({found / len(own):.0%}; {len(result.unexpected_keys)} of its keys are "
                "not the model's); check --model and --to"
            )
        print(
            f"loaded {args.checkpoint}{where}: {found} of the model's {len(own)} keys ({found / len(own):.0%}), "
            f"{len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected keys"
        )
        if skipped:
            print(
                f"  skipped {len(skipped)} tensor(s) whose shape differs (another class count?): {skipped[0]}"
                + (f", and {len(skipped) - 1} more" if len(skipped) > 1 else "")
            )
    return model


def _spectra(layer: nn.Module) -> tuple[torch.Tensor, str]:
    """The weight-matrix responses of a dynamic layer's kernel bank, and a line with both similarities."""
    bank = analysis.kernel_bank(layer)
    matrix = analysis.frequency_responses(bank, "matrix")
    kernel = (
        "flat (1x1)"
        if bank.shape[-2:] == (1, 1)
        else f"{analysis.response_similarity(analysis.frequency_responses(bank, 'kernel')):.3f}"
    )
    return matrix, f"weight-matrix spectrum {analysis.response_similarity(matrix):.3f}   kernel spectrum {kernel}"


def analyze_model(args: argparse.Namespace, out: Path) -> int:
    """``freqdyn analyze --model / --checkpoint``: spectra, attention spread and ERF of a user's network."""
    from .layers.catalog import dynamic_layers

    try:
        model = _user_model(args)
    except ValueError as error:
        print(f"freqdyn analyze: {error}", file=sys.stderr)
        return 2
    layers = dynamic_layers(model)
    title = args.model or Path(args.checkpoint).name  # the model's name in messages and the ERF plot
    if not layers:
        print(f"freqdyn analyze: {title} has no dynamic layers; convert it with --to", file=sys.stderr)
        return 2
    print(
        f"Frequency responses of the kernels each of the {len(layers)} dynamic layers mixes "
        "(mean pairwise cosine similarity; 1 = alike):"
    )
    rows: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        matrix, similarity = _spectra(layer)
        print(f"  {name:<28} {type(layer).__name__:<14} {similarity}")
        if len(rows) < args.plot_layers:
            rows[name] = matrix
    print(f"  wrote {analysis.plot_frequency_responses(rows, out / 'frequency_responses.png')}")
    photo = analysis.photo(args.size)
    spread = analysis.attention_spread(model, photo)
    print(
        "What training made of the attentions on skimage's astronaut: spread (std / mean) of each head's values, "
        "0 = constant, as a fresh or converted layer (KW: own_cell, the weights' share on each position's own "
        "cell, 1 = one-hot, as at temperature 1):"
    )
    for name, heads in spread.items():
        print(f"  {name:<28} " + "   ".join(f"{head} {value:.3f}" for head, value in heads.items()))
    erf = analysis.effective_receptive_field(analysis.last_feature_map(model), photo)
    print(f"Effective receptive field of {title}'s last feature map: radius {analysis.erf_radius(erf)}")
    print(f"  wrote {analysis.plot_erf({title: erf}, out / 'erf.png')}")
    return 0


def analyze(args: argparse.Namespace) -> int:
    """``freqdyn analyze``: a user's network (:func:`analyze_model`), or random layers of each kind and MRFA's ERF."""
    from .layers import MRFA

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if getattr(args, "model", None) or getattr(args, "checkpoint", None):
        return analyze_model(args, out)
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 64, 3, padding=1)
    k = args.kernel_num
    layers = {**paper_layers(conv, k), "KW (4x)": KWConv2d.standalone(64, 64, 3, padding=1, cell_num_ratio=4)}
    print("Frequency responses of the kernels each layer mixes (mean pairwise cosine similarity; 1 = alike):")
    rows = {}
    for name, layer in layers.items():
        rows[name], similarity = _spectra(layer)
        print(f"  {name:<15} {similarity}")
    print(f"  wrote {analysis.plot_frequency_responses(rows, out / 'frequency_responses.png')}")
    channels, size = 32, args.size
    lift = nn.Conv2d(3, channels, 1)
    photo = lift(analysis.photo(size)).detach()
    models = {
        "3x3 conv": nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
        "11x11 conv": nn.Conv2d(channels, channels, 11, padding=5, groups=channels),
        "MRFA": MRFA(channels),
    }
    maps = {name: analysis.effective_receptive_field(m, photo) for name, m in models.items()}
    print("Effective receptive fields on skimage's astronaut (radius holding 50% of the contribution):")
    for name, erf in maps.items():
        support = int((erf > 0).nonzero()[:, 0].max() - size // 2)
        print(f"  {name:<12} radius {analysis.erf_radius(erf):>2}, support radius {support}")
    print(f"  wrote {analysis.plot_erf(maps, out / 'erf.png')}")
    return 0


def profile_command(args: argparse.Namespace) -> int:
    """``freqdyn profile``: FLOPs and parameters of a model, plain and converted."""
    from .profile import profile

    try:
        model = build_model(args.model).eval()
    except ValueError as error:
        print(f"freqdyn profile: {error}", file=sys.stderr)
        return 2
    shape = (1, 3, args.size, args.size)
    before = profile(model, shape)
    computed = before.first_conv_input or shape
    at = (
        f"at {computed}"
        if computed[2:] == shape[2:]
        else (f"at {computed}, the size {args.model} resizes its {shape} input to")
    )
    print(
        f"{args.model}: {before.flops / 1e9:.3f} GFLOPs, {before.params / 1e6:.3f}M params {at} "
        "(FLOPs = 2 x multiply-accumulates, FFTs and CARAFE included)"
    )
    if args.to != "none":
        include = BOTTLENECK_CONVS if "resnet" in args.model and args.to in CONV_TARGETS else None
        report = convert(model, args.to, include=include)
        print(f"{args.model} -> {args.to}: {report}")
        if not report.replaced:
            print(
                f"freqdyn profile: no layer of {args.model} was converted to {args.to} (the target's gating or "
                "source type matched none), so there is nothing to compare",
                file=sys.stderr,
            )
            return 1
        after = profile(model, shape)
        print(
            f"  {after.flops / 1e9:.3f} GFLOPs ({(after.flops - before.flops) / 1e9:+.3f}), "
            f"{after.params / 1e6:.3f}M params ({(after.params - before.params) / 1e6:+.3f}M)"
        )
        if args.layers:
            print(after)
    return 0


def convert_checkpoint_command(args: argparse.Namespace) -> int:
    """``freqdyn convert-checkpoint``: a plain checkpoint's state_dict as a converted network's."""
    from .checkpoint import convert_checkpoint

    checkpoint = load_file(args.input, trust=False)
    state, key = checkpoint_state(checkpoint)
    options = {"fdconv": {"kernel_num": args.kernel_num, "param_ratio": args.param_ratio}}.get(
        args.to, {"num_experts": args.num_experts} if args.num_experts else {}
    )
    converted, report = convert_checkpoint(state, args.to, include=args.include, exclude=args.exclude, **options)
    if key is None:
        checkpoint = converted
    else:
        checkpoint[key] = converted
    torch.save(checkpoint, args.output)
    print(f"{args.input} -> {args.output} ({args.to}): {report}")
    for name, reason in report.skipped.items():
        print(f"  kept {name}: {reason}")
    return 0


def yolo_command(args: argparse.Namespace) -> int:
    """ultralytics' ``yolo`` command line with freqdyn's YAML rows registered (``freqdyn yolo pose train ...``)."""
    from ultralytics.cfg import entrypoint

    from .integrations import ultralytics as fu

    if any(" " in a for a in args.args):
        raise SystemExit("freqdyn yolo: ultralytics' entrypoint splits on spaces; use paths without spaces")
    fu.register()
    entrypoint(" ".join(["yolo", *args.args]))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``freqdyn`` command: parse ``argv`` and run its subcommand; returns the exit status."""
    parser = argparse.ArgumentParser(prog="freqdyn", description="Frequency-aware dynamic convolution blocks.")
    parser.add_argument("--version", action="version", version=f"freqdyn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser(
        formatter_class=_DefaultsHelp,
        name="demo",
        help="ResNet-50 overhead table, FDConv equivalence on a photo, layer timing, frequency / ERF plots",
    )
    p_demo.add_argument("--kernel-num", type=int, default=64, help="FDConv kernel_num of the ResNet-50 conversion")
    p_demo.add_argument("--out", default="freqdyn-demo", help="folder for the frequency-response and ERF plots")
    p_demo.add_argument("--size", type=int, default=64, help="image size for the ERF")
    p_demo.set_defaults(func=demo)
    p_bench = sub.add_parser(
        formatter_class=_DefaultsHelp,
        name="bench",
        help="time one layer of each kind against nn.Conv2d on this machine",
    )
    p_bench.add_argument("--batch", type=int, default=8, help="batch size")
    p_bench.add_argument("--channels", type=int, default=64, help="input and output channels")
    p_bench.add_argument("--size", type=int, default=56, help="height and width of the input")
    p_bench.add_argument("--kernel-num", type=int, default=64, help="FDConv kernel_num")
    p_bench.add_argument("--train", action="store_true", help="time forward + backward in train mode")
    p_bench.set_defaults(func=bench)
    p_analyze = sub.add_parser(
        formatter_class=_DefaultsHelp, name="analyze", help="frequency responses of dynamic kernels and ERF plots (PNG)"
    )
    p_analyze.add_argument("--out", default="freqdyn-analysis", help="folder for the PNG files")
    p_analyze.add_argument("--size", type=int, default=64, help="image size for the ERF")
    p_analyze.add_argument(
        "--kernel-num", type=int, default=64, help="FDConv kernel_num (random layers, or --to fdconv)"
    )
    p_analyze.add_argument("--model", help="analyse this torchvision / timm model instead of random layers")
    p_analyze.add_argument(
        "--to",
        default="none",
        choices=["none", *TARGETS, KERNEL_WAREHOUSE],
        help="with --model: convert it first (ResNets: the bottleneck convs; kw: every conv, "
        "as the authors' KW ResNets)",
    )
    p_analyze.add_argument(
        "--cell-num-ratio", type=float, default=1.0, help="with --to kw: KW's cell_num_ratio (4 = the paper's KW (4x))"
    )
    p_analyze.add_argument(
        "--checkpoint",
        help="with --model: a state_dict (or a dict holding one: mmengine's "
        "'state_dict', a detector's 'backbone.' keys) to load, e.g. a trained network's; alone: an "
        "ultralytics .pt (with --trust-checkpoint)",
    )
    p_analyze.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="load pickled objects from --checkpoint (ultralytics .pt, mmengine training state): "
        "only for files you trust",
    )
    p_analyze.add_argument("--plot-layers", type=int, default=6, help="with --model: layers in the frequency plot")
    p_analyze.set_defaults(func=analyze)
    p_profile = sub.add_parser(
        formatter_class=_DefaultsHelp,
        name="profile",
        help="FLOPs and parameters of a torchvision or timm model, plain and converted (ResNets: bottleneck convs)",
    )
    p_profile.add_argument(
        "--model",
        default="resnet50",
        help="a torchvision model (classification, detection, segmentation) or a timm model name",
    )
    p_profile.add_argument(
        "--to", default="fdconv", choices=["none", *TARGETS, KERNEL_WAREHOUSE], help="conversion target"
    )
    p_profile.add_argument("--size", type=int, default=224, help="input height and width")
    p_profile.add_argument("--layers", action="store_true", help="list every converted layer")
    p_profile.set_defaults(func=profile_command)
    p_ckpt = sub.add_parser(
        formatter_class=_DefaultsHelp,
        name="convert-checkpoint",
        help="rewrite a checkpoint's conv weights into FDConv / DY-Conv / "
        "CondConv / ODConv state (loads with strict=True into a model built with the same options)",
    )
    p_ckpt.add_argument("input", help="a state_dict, or a dict holding one under 'state_dict' or 'model'")
    p_ckpt.add_argument("output", help="where to write the converted checkpoint")
    p_ckpt.add_argument("--to", default="fdconv", choices=list(CONV_TARGETS), help="target layer")
    p_ckpt.add_argument("--include", help="regex: convert only convs whose name matches (default: all convs)")
    p_ckpt.add_argument(
        "--exclude", help="regex: keep convs whose name matches, e.g. 'downsample' (default: none kept)"
    )
    p_ckpt.add_argument("--kernel-num", type=int, default=64, help="FDConv kernel_num")
    p_ckpt.add_argument("--param-ratio", type=int, default=1, help="FDConv param_ratio")
    p_ckpt.add_argument("--num-experts", type=int, help="experts of DY-Conv / CondConv / ODConv (default: the layer's)")
    p_ckpt.set_defaults(func=convert_checkpoint_command)
    p_yolo = sub.add_parser(
        formatter_class=_DefaultsHelp,
        name="yolo",
        help="ultralytics' yolo CLI with the C2f_FDConv / C3k2_FDConv / FDConv / DynamicConv / CondConv / "
        "ODConv / FreqFusionConcat rows registered, e.g. 'freqdyn yolo pose train model=... data=...'",
    )
    p_yolo.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the yolo command, unchanged")
    p_yolo.set_defaults(func=yolo_command)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        return args.func(args)
    except (CheckpointFileError, TorchvisionPairError) as error:  # the user's files and installs: one line
        print(f"freqdyn {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
