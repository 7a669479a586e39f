"""torch.compile: one graph for every batch (B >= 2) and spatial size, no graph breaks, eager's outputs and gradients.

Dynamo alone (CompileCounter) counts graphs; AOTAutograd (aot_eager) checks the compiled backward, including
FBM's opaque low-pass operator. Inductor's code generation is not run here (minutes on 2 cores; see BENCHMARKS.md).
"""

import copy

import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.testing import CompileCounter, CompileCounterWithBackend

from freqdyn import FreqFusion
from helpers import perturb_
from zoo import ZOO

# the zoo's layers whose graphs hold size-dependent work (FBM's operators, per-sample kernels, attention pooling)
COMPILED = ["fdconv", "fdconv-fbm-groups", "fdconv-stride-feature", "odconv", "dyconv", "condconv", "kw"]
SHAPES = [(2, 7, 9), (3, 7, 9), (5, 10, 6), (4, 13, 12)]


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


@pytest.mark.parametrize("kind", COMPILED)
@pytest.mark.parametrize("training", [False, True])
def test_one_graph_for_every_batch_and_size(kind, training):
    build, inputs = ZOO[kind]
    layer = perturb_(build(), seed=1).double().train(training)
    reference = copy.deepcopy(layer)
    counter = CompileCounter()
    compiled = torch.compile(layer, backend=counter, dynamic=True, fullgraph=True)
    for batch, height, width in SHAPES:
        (x,) = (t.double() for t in inputs(batch, (height, width)))
        torch.testing.assert_close(compiled(x), reference(x), rtol=1e-4, atol=1e-5)
    assert counter.frame_count == 1


def _assert_compiled_training_matches_eager(layer, steps) -> CompileCounterWithBackend:
    """aot_eager training steps on each tuple of inputs in ``steps`` (no recompiles): eager's input and weight
    grads. Returns the backend's counter (its frame count includes dynamo's restarted analyses)."""
    reference = copy.deepcopy(layer)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(layer, backend=counter, dynamic=True, fullgraph=True)
    for step, inputs in enumerate(steps):
        inputs = [t.requires_grad_() for t in inputs]
        inputs_ref = [t.detach().clone().requires_grad_() for t in inputs]
        with torch.compiler.set_stance("fail_on_recompile" if step else "default"):
            out = compiled(*inputs)
        out_ref = reference(*inputs_ref)
        outs, outs_ref = (o if isinstance(o, tuple) else (o,) for o in (out, out_ref))
        sum(o.square().sum() for o in outs).backward()
        sum(o.square().sum() for o in outs_ref).backward()
        for t, t_ref in zip(inputs, inputs_ref, strict=True):
            torch.testing.assert_close(t.grad, t_ref.grad, rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(layer.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)
    return counter


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fdconv", "fdconv-fbm-groups", "odconv"])
def test_compiled_training_step_matches_eager(kind):
    build, inputs = ZOO[kind]
    layer = perturb_(build(), seed=2).double().train()
    _assert_compiled_training_matches_eager(
        layer, [tuple(t.double() for t in inputs(b, (h, w))) for b, h, w in SHAPES[1:3]]
    )


@pytest.mark.slow
def test_freqfusion_compiled_training_is_one_graph_for_new_sizes():
    ff = perturb_(FreqFusion(16, 16, lowpass_kernel=3), seed=5).double().train()  # 3x3: a smaller trace
    counter = _assert_compiled_training_matches_eager(
        ff,
        [
            (torch.randn(b, 16, 2 * h, 2 * w, dtype=torch.float64), torch.randn(b, 16, h, w, dtype=torch.float64))
            for b, h, w in [(2, 4, 5), (3, 6, 3)]
        ],
    )
    assert counter.frame_count == 1


@pytest.mark.slow  # dynamo traces both layers (40 s on 2 cores)
@pytest.mark.parametrize(
    "kind,sizes", [("fdlinear", [(2, (5,)), (3, (9,)), (6, (4,))]), ("freqfusion", [(2, (8, 10)), (3, (12, 6))])]
)
def test_fdlinear_and_freqfusion_compile_once(kind, sizes):
    build, inputs = ZOO[kind]
    layer = perturb_(build(), seed=3).eval()
    counter = CompileCounter()
    compiled = torch.compile(layer, backend=counter, dynamic=True, fullgraph=True)
    for batch, size in sizes:
        args = inputs(batch, size)
        got, want = compiled(*args), layer(*args)
        for a, b in zip(*((t,) if isinstance(t, torch.Tensor) else t for t in (got, want)), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert counter.frame_count == 1


def test_fbm_low_pass_operator_gradient_is_its_adjoint():
    from freqdyn.layers.fdconv.low_pass import stacked_low_passes

    x = torch.randn(2, 3, 7, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: stacked_low_passes(t, [2, 4, 8], "official"), (x,))
    torch.library.opcheck(stacked_low_passes, (x.detach(), [2, 4], "exact"))


def test_every_public_layer_compiles_or_is_opted_out():
    from helpers import assert_covered

    assert_covered(
        {type(ZOO[kind].build()).__name__ for kind in COMPILED} | {"FDLinear", "FreqFusion"},
        {
            "FDLinearQwen": "FDLinear's synthesis; its packed (cu_seqlens) path loops over sequences",
            "FreqFusionFPN": "FreqFusion (tested) plus plain convs",
            "MRFA": "plain depthwise convs and LayerNorm: nothing size-dependent",
            "UniConvNetBlock": "MRFA plus plain layers",
            "UniConvNet": "its blocks; DCNv3 is grid_sample",
            "DCNv3": "grid_sample and plain ops",
            "FrequencyBandModulation": "inside FDConv (fdconv rows)",
            "StarReLU": "elementwise",
            "DropPath": "elementwise",
            "LayerNorm2d": "nn.LayerNorm",
            "KWConv1d": "KWConv2d's code with F.conv1d",
            "KWConv3d": "KWConv2d's code with F.conv3d",
            "KWLinear": "a KWConv1d",
            "WarehouseManager": "holds the cells (the kw row's)",
        },
    )


@pytest.mark.slow  # dynamo traces a whole ResNet-18 twice (~20 s on 2 cores)
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_converted_resnet18_traces_as_one_graph(training):
    """torch.compile(model, fullgraph=True) of a converted network needs one graph without breaks: no host sync and
    no data-dependent Python branch in any FDConv forward (what CUDA-graph capture needs too)."""
    torchvision = pytest.importorskip("torchvision")
    from freqdyn import convert

    torch.manual_seed(0)
    model = torchvision.models.resnet18().train(training)
    convert(model, "fdconv", include=r"layer\d\.\d+\.conv[12]$", kernel_num=16)
    x = torch.randn(2, 3, 64, 64)
    dynamo.reset()
    with torch.set_grad_enabled(training):
        explained = dynamo.explain(lambda inp: model(inp).sum())(x)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons


@pytest.mark.slow  # aot_eager traces FreqFusion's forward and backward (~10 s on 2 cores)
def test_freqfusion_checkpointed_under_compile_trains_as_eager():
    """Activation checkpointing around FreqFusion under torch.compile: AOTAutograd cannot functionalise a write
    into an as_strided view, which CARAFE's layouts are in eager; compiled, they are scattered copies."""
    from torch.utils.checkpoint import checkpoint

    build, inputs = ZOO["freqfusion"]
    layer = perturb_(build(), seed=6).double().train()
    reference = copy.deepcopy(layer)
    compiled = torch.compile(
        lambda hr, lr: checkpoint(layer, hr, lr, use_reentrant=False), backend="aot_eager", fullgraph=True
    )
    args = [t.double().requires_grad_() for t in inputs()]
    args_ref = [t.detach().clone().requires_grad_() for t in args]
    sum(o.square().sum() for o in compiled(*args)).backward()
    sum(o.square().sum() for o in reference(*args_ref)).backward()
    for t, t_ref in zip(args, args_ref, strict=True):
        torch.testing.assert_close(t.grad, t_ref.grad, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_fdconv_graph_holds_its_operators_and_no_fft(training):
    """Compiled, FDConv's kernel work is one opaque operator, and so are KSM-Global's trunk, FBM's FFTs and its
    attention conv: inductor has no complex code generation, its lowering of the synthesis' gathers and of a conv's
    backward ran 2-2.4x slower than eager, and every kernel it generates costs compile time (BENCHMARKS.md)."""
    from torch._dynamo.testing import EagerAndRecordGraphs

    backend = EagerAndRecordGraphs()
    build, inputs = ZOO["fdconv-fbm-groups"]
    layer = build().train(training)
    with torch.set_grad_enabled(training):
        torch.compile(layer, backend=backend, fullgraph=True)(*inputs(2, (7, 9)))
    targets = {str(n.target) for g in backend.graphs for n in g.graph.nodes if n.op == "call_function"}
    wanted = {"freqdyn.kernel_conv.default", "freqdyn.fbm_band_modulation.default", "freqdyn.per_sample_conv2d.default"}
    wanted.add("freqdyn.global_trunk.default")
    assert wanted <= targets
    assert not [t for t in targets if "fft" in t or ("conv2d" in t and not t.startswith("freqdyn"))]
