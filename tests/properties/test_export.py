"""Export paths: ONNX (dynamo exporter) run in onnxruntime, TorchScript trace, torch.compile without graph breaks."""

import warnings

import pytest
import torch

from freqdyn import FDConv
from zoo import ZOO

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.slow  # a quick run: python -m pytest -m 'not slow'


EXPORTED = ["fdconv", "dyconv", "odconv-stride", "mrfa", "kw"]  # the zoo's layers with size-dependent graphs


def _module(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return ZOO[name].build().eval()


@pytest.mark.parametrize("name", EXPORTED)
def test_onnx_export_matches_pytorch(name, tmp_path):
    """Dynamic batch (per-sample convs export as unfold + bmm, not groups=B) and dynamic H, W (FDConv's FBM builds
    its band operators in the graph from the input's shape)."""
    module, inputs = _module(name), ZOO[name].inputs
    (x,) = inputs(2, (16, 16))
    path = tmp_path / f"{name}.onnx"
    spatial = True
    dims = ({0: torch.export.Dim.AUTO, **({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO} if spatial else {})},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=True, dynamic_shapes=dims, verbose=False)
    session = onnxruntime.InferenceSession(str(path))
    feed = session.get_inputs()[0].name
    shapes = (x, *inputs(3, (20, 12)), *inputs(1, (96, 80)))  # 96 > 64: an official mask upsampled
    for inp in shapes:  # a second batch / spatial shape catches silent specialisation
        (out,) = session.run(None, {feed: inp.numpy()})
        with torch.no_grad():
            ref = module(inp)
        assert out.shape == tuple(ref.shape)
        torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("masks", ["official", "exact"])
@pytest.mark.parametrize("spatial_group", [1, 4])
def test_torchscript_onnx_export_runs_at_other_batch_and_image_sizes(masks, spatial_group, tmp_path):
    """The TorchScript-based exporter (ultralytics' route) with dynamic axes: FBM's masks and operators and KSM's
    shapes come from the input's shape in the graph, so other sizes (one beyond the official 64 grid) compute what
    PyTorch computes; attentions perturbed, so samples and pixels differ."""
    from helpers import perturb_

    torch.manual_seed(1)
    module = perturb_(
        FDConv(16, 24, 3, padding=1, kernel_num=4, fbm_masks=masks, fbm_spatial_group=spatial_group), scale=0.3
    ).eval()
    path = tmp_path / "fdconv.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.randn(1, 16, 32, 32),),
            str(path),
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}},
        )
    session = onnxruntime.InferenceSession(str(path))
    for shape in [(1, 16, 32, 32), (2, 16, 32, 32), (1, 16, 48, 40), (2, 16, 100, 66)]:
        inp = torch.randn(shape)
        (out,) = session.run(None, {"x": inp.numpy()})
        with torch.no_grad():
            ref = module(inp)
        torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("name", ["fdconv", "dyconv", "mrfa"])
def test_torchscript_trace_with_default_checks(name, grad):
    """``check_trace`` (the default) re-runs the trace, with grad enabled or not; the traced graph runs at another
    batch and spatial size (FDConv's FBM builds its operators in the graph from the input's shape)."""
    module, inputs = _module(name), ZOO[name].inputs
    with torch.set_grad_enabled(grad):
        traced = torch.jit.trace(module, inputs(2, (16, 16)))
    (x,) = inputs(3, (20, 12))
    with torch.no_grad():
        torch.testing.assert_close(traced(x), module(x))


@pytest.mark.parametrize("name", EXPORTED)
def test_compile_has_no_graph_break(name):
    module = _module(name)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    (x,) = ZOO[name].inputs(2, (16, 16))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x), rtol=1e-5, atol=1e-5)


def test_freqfusion_onnx_export_with_dynamic_sizes(tmp_path):
    module = _module("freqfusion")
    inputs = ZOO["freqfusion"].inputs(1, (16, 16))
    path = tmp_path / "freqfusion.onnx"
    dims = tuple({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO} for _ in inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), dynamo=True, dynamic_shapes=dims, verbose=False)
    session = onnxruntime.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    for hr, lr in (inputs, ZOO["freqfusion"].inputs(1, (24, 20))):
        outs = session.run(None, dict(zip(names, (hr.numpy(), lr.numpy()), strict=True)))
        with torch.no_grad():
            refs = module(hr, lr)
        for out, ref in zip(outs, refs, strict=True):
            torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-4, atol=1e-4)


def test_freqfusion_compiles_without_graph_break():
    module = _module("freqfusion")
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    hr, lr = ZOO["freqfusion"].inputs(1, (12, 10))
    with torch.no_grad():
        for a, b in zip(compiled(hr, lr), module(hr, lr), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_freqfusion_trace_runs_at_another_size():
    module = _module("freqfusion")
    with torch.no_grad():
        traced = torch.jit.trace(module, ZOO["freqfusion"].inputs(1, (16, 16)), check_trace=False)
        hr, lr = ZOO["freqfusion"].inputs(1, (24, 20))
        for a, b in zip(traced(hr, lr), module(hr, lr), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["fdconv", "dyconv", "odconv", "mrfa"])
def test_jit_script_fails_with_a_message_that_says_to_trace(name):
    model = torch.nn.Sequential(torch.nn.Identity(), _module(name))
    with pytest.raises(RuntimeError, match=r"torch\.jit\.trace"):
        torch.jit.script(model)


def test_every_public_layer_exports_or_is_opted_out():
    from helpers import assert_covered

    assert_covered(
        {type(_module(name)).__name__ for name in EXPORTED} | {"FreqFusion"},
        {
            "CondConv2d": "the kernel-bank path of DY-Conv (tested)",
            "FDLinear": "FDConv's synthesis (tested) as a matmul",
            "FDLinearQwen": "FDLinear's",
            "FreqFusionFPN": "FreqFusion (tested) plus plain convs",
            "UniConvNetBlock": "MRFA (tested) plus plain layers",
            "UniConvNet": "its blocks",
            "DCNv3": "grid_sample",
            "FrequencyBandModulation": "inside FDConv (tested)",
            "StarReLU": "elementwise",
            "DropPath": "the identity in eval",
            "LayerNorm2d": "nn.LayerNorm",
            "KWConv1d": "KWConv2d's code with F.conv1d",
            "KWConv3d": "KWConv2d's code with F.conv3d",
            "KWLinear": "a KWConv1d",
            "WarehouseManager": "holds the cells (the kw row's)",
        },
    )
