"""Export paths: ONNX (dynamo exporter) run in onnxruntime, TorchScript trace, torch.compile without graph breaks."""
import warnings

import pytest
import torch

from freqdyn import MRFA, DynamicConv2d, FDConv, FreqFusion, ODConv2d

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.slow  # a quick run: python -m pytest -m 'not slow'


def _modules():
    torch.manual_seed(0)
    return {
        "fdconv": FDConv(32, 32, 3, padding=1, kernel_num=8).eval(),
        "dyconv": DynamicConv2d(32, 32, 3, padding=1, temperature=1.0).eval(),
        "odconv": ODConv2d(32, 48, 3, stride=2, padding=1).eval(),
        "mrfa": MRFA(32).eval(),
    }


@pytest.mark.parametrize("name", ["fdconv", "dyconv", "odconv", "mrfa"])
def test_onnx_export_matches_pytorch(name, tmp_path):
    """Dynamic batch (per-sample convs export as unfold + bmm, not groups=B) and dynamic H, W; FDConv's FBM
    operators depend on H, W, so its H, W stay static."""
    module = _modules()[name]
    x = torch.randn(2, 32, 16, 16)
    path = tmp_path / f"{name}.onnx"
    spatial = name != "fdconv"
    dims = ({0: torch.export.Dim.AUTO, **({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO} if spatial else {})},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=True, dynamic_shapes=dims, verbose=False)
    session = onnxruntime.InferenceSession(str(path))
    feed = session.get_inputs()[0].name
    shapes = (x, torch.randn(3, 32, 20, 12) if spatial else torch.randn(3, 32, 16, 16), torch.randn(1, 32, 16, 16))
    for inp in shapes:  # a second batch / spatial shape catches silent specialisation
        (out,) = session.run(None, {feed: inp.numpy()})
        with torch.no_grad():
            ref = module(inp)
        assert out.shape == tuple(ref.shape)
        torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("name", ["fdconv", "dyconv", "mrfa"])
def test_torchscript_trace_with_default_checks(name, grad):
    """``check_trace`` (the default) re-runs the trace, with grad enabled or not. FDConv's FBM operators depend on
    the spatial size (the official band masks are resized to it) and enter the trace as constants: its trace runs
    at its traced size, like its ONNX export; the others run at another spatial size too. The batch size is free."""
    module = _modules()[name]
    with torch.set_grad_enabled(grad), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(module, torch.randn(2, 32, 16, 16))
    said = [str(w.message) for w in caught if "runs at H=16, W=16 only" in str(w.message)]
    assert bool(said) == (name == "fdconv")  # FDConv's trace says that its H and W are fixed
    x = torch.randn(3, 32, 16, 16) if name == "fdconv" else torch.randn(3, 32, 20, 12)  # another batch size
    with torch.no_grad():
        torch.testing.assert_close(traced(x), module(x))


@pytest.mark.parametrize("name", ["fdconv", "dyconv", "odconv", "mrfa"])
def test_compile_has_no_graph_break(name):
    module = _modules()[name]
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x), rtol=1e-5, atol=1e-5)


def test_freqfusion_onnx_export_with_dynamic_sizes(tmp_path):
    torch.manual_seed(0)
    module = FreqFusion(16, 16, compressed_channels=16, feature_resample=True).eval()
    inputs = (torch.randn(1, 16, 16, 16), torch.randn(1, 16, 8, 8))
    path = tmp_path / "freqfusion.onnx"
    dims = tuple({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO} for _ in inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), dynamo=True, dynamic_shapes=dims, verbose=False)
    session = onnxruntime.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    for hr, lr in (inputs, (torch.randn(1, 16, 24, 20), torch.randn(1, 16, 12, 10))):
        outs = session.run(None, dict(zip(names, (hr.numpy(), lr.numpy()), strict=True)))
        with torch.no_grad():
            refs = module(hr, lr)
        for out, ref in zip(outs, refs, strict=True):
            torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-4, atol=1e-4)


def test_freqfusion_compiles_without_graph_break():
    torch.manual_seed(0)
    module = FreqFusion(16, 16, compressed_channels=16, feature_resample=True).eval()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    hr, lr = torch.randn(1, 16, 12, 10), torch.randn(1, 16, 6, 5)
    with torch.no_grad():
        for a, b in zip(compiled(hr, lr), module(hr, lr), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_freqfusion_trace_runs_at_another_size():
    torch.manual_seed(0)
    module = FreqFusion(16, 16, compressed_channels=16, feature_resample=True).eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, (torch.randn(1, 16, 16, 16), torch.randn(1, 16, 8, 8)), check_trace=False)
        hr, lr = torch.randn(1, 16, 24, 20), torch.randn(1, 16, 12, 10)
        for a, b in zip(traced(hr, lr), module(hr, lr), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["fdconv", "dyconv", "odconv", "mrfa"])
def test_jit_script_fails_with_a_message_that_says_to_trace(name):
    model = torch.nn.Sequential(torch.nn.Identity(), _modules()[name])
    with pytest.raises(RuntimeError, match="torch.jit.trace"):
        torch.jit.script(model)


def test_every_public_layer_exports_or_is_opted_out():
    from helpers import assert_covered

    assert_covered({type(m).__name__ for m in _modules().values()} | {"FreqFusion"}, {
        "CondConv2d": "the kernel-bank path of DY-Conv (tested)",
        "FDLinear": "FDConv's synthesis (tested) as a matmul", "FDLinearQwen": "FDLinear's",
        "FreqFusionFPN": "FreqFusion (tested) plus plain convs",
        "UniConvNetBlock": "MRFA (tested) plus plain layers", "UniConvNet": "its blocks", "DCNv3": "grid_sample",
        "FrequencyBandModulation": "inside FDConv (tested)",
        "StarReLU": "elementwise", "DropPath": "the identity in eval", "LayerNorm2d": "nn.LayerNorm",
    })
