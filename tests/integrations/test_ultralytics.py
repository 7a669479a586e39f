"""The seed's yolov8-pose-C2f_FDConv.yaml builds, runs, trains one short epoch and reloads, via register()."""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ultralytics = pytest.importorskip("ultralytics")
cv2 = pytest.importorskip("cv2")

from freqdyn import FDConv  # noqa: E402
from freqdyn.integrations import ultralytics as fu  # noqa: E402

pytestmark = pytest.mark.slow  # a quick run: python -m pytest -m 'not slow'


@pytest.fixture
def registered():
    fu.register()
    yield
    fu.unregister()


def _dataset(root, task="pose", n_train=4, n_val=2, size=96):
    """Real YOLO-format files of ``task`` ('detect', 'segment', 'pose'): a bright rectangle 'person' (its box, its
    outline as the segment polygon, 17 keypoints inside it)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            x0, y0 = rng.integers(5, size // 2, 2)
            w, h = rng.integers(20, size // 2, 2)
            image[y0 : y0 + h, x0 : x0 + w] = 220
            cv2.imwrite(str(root / "images" / split / f"{i}.jpg"), image)
            box = f"{(x0 + w / 2) / size:.4f} {(y0 + h / 2) / size:.4f} {w / size:.4f} {h / size:.4f}"
            if task == "segment":
                corners = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
                label = " ".join(f"{x / size:.4f} {y / size:.4f}" for x, y in corners)
            elif task == "pose":
                kx = (x0 + rng.random(17) * w) / size
                ky = (y0 + rng.random(17) * h) / size
                label = box + " " + " ".join(f"{a:.4f} {b:.4f} 2" for a, b in zip(kx, ky, strict=True))
            else:
                label = box
            (root / "labels" / split / f"{i}.txt").write_text(f"0 {label}\n")
    data = root / "data.yaml"
    pose = (
        "kpt_shape: [17, 3]\nflip_idx: [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]\n"
        if task == "pose"
        else ""
    )
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\n{pose}names:\n  0: person\n")
    return data


VARIANTS = [(version, task) for version in fu.YAML_VERSIONS for task in fu.YAML_TASKS]


def test_yaml_builds_at_scale_n_and_runs(registered):
    model = ultralytics.YOLO(fu.model_yaml("n"))
    net = model.model
    rows = [m for m in net.model if m.type.startswith("C2f_FDConv")]
    assert len(rows) == 4 and all(isinstance(m, fu.C2f_FDConv) for m in rows)
    assert [m.type for m in rows].count("C2f_FDConv (plain: gated)") == 1  # the 16-channel first stage
    fdconvs = [m for m in net.modules() if isinstance(m, FDConv)]
    assert len(fdconvs) >= 4  # the 16-channel first stage stays a plain conv (gating)
    net.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = net(x)[0]
    assert out.shape[0] == 1 and out.shape[1] == 4 + 1 + 17 * 3
    net.fuse()  # the predictor / exporter fuse BN into Conv blocks: ours must come through unchanged
    with torch.no_grad():
        torch.testing.assert_close(net(x)[0], out, rtol=1e-3, atol=1e-3)


def test_conv_rows_convert_with_neutral_output(registered):
    from ultralytics.nn.tasks import parse_model

    yaml = {
        "nc": 1,
        "backbone": [
            [-1, 1, "Conv", [32, 3, 2]],
            [-1, 1, "DynamicConv", [64, 3, 1]],
            [-1, 1, "ODConv", [64, 3, 1]],
            [-1, 1, "CondConv", [64, 1, 1]],
            [-1, 1, "FDConv", [64, 3, 2]],
        ],
        "head": [],
    }
    model, _ = parse_model(yaml, ch=3, verbose=False)
    assert [m.type for m in model] == [
        "ultralytics.nn.modules.conv.Conv",
        "DynamicConv",
        "ODConv",
        "CondConv",
        "FDConv",
    ]
    assert all(isinstance(m, fu.DynamicConvBNAct) for m in list(model)[1:])
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 64, 8, 8)


def test_trains_one_epoch_and_checkpoint_reloads(registered, tmp_path):
    data = _dataset(tmp_path / "pose")
    model = ultralytics.YOLO(fu.model_yaml("n"))
    model.train(
        data=str(data),
        epochs=1,
        imgsz=64,
        batch=2,
        device="cpu",
        workers=0,
        plots=False,
        amp=False,
        optimizer="SGD",
        lr0=0.01,
        project=str(tmp_path / "runs"),
        name="t",
        exist_ok=True,
        verbose=False,
        val=False,
    )
    weights = tmp_path / "runs" / "t" / "weights" / "last.pt"
    assert weights.exists()
    fu.unregister()  # loading a checkpoint unpickles the model: no YAML parsing, no registration needed
    reloaded = ultralytics.YOLO(str(weights))
    assert any(isinstance(m, fu.C2f_FDConv) for m in reloaded.model.modules())
    results = reloaded.predict(np.full((64, 64, 3), 128, np.uint8), imgsz=64, device="cpu", verbose=False)
    assert len(results) == 1


def test_freqfusion_concat_row_replaces_upsample_and_concat(registered):
    from ultralytics.nn.tasks import parse_model

    yaml = {
        "nc": 1,
        "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [48, 3, 2]]],
        "head": [[[-1, 1], 1, "FreqFusionConcat", [1]], [-1, 1, "Conv", [16, 3, 1]]],
    }
    model, _save = parse_model(yaml, ch=3, verbose=False)
    fuse = model[3]
    assert isinstance(fuse, fu.FreqFusionConcat) and fuse.type == "FreqFusionConcat"
    assert (fuse.fusion.lr_channels, fuse.fusion.hr_channels) == (48, 32) and model[4].conv.in_channels == 80
    y1 = model[1](model[0](torch.randn(2, 3, 40, 40)))
    out = fuse([model[2](y1), y1])
    assert out.shape == (2, 80, 10, 10)


def test_stock_pretrained_weights_load_into_the_fdconv_model(registered, tmp_path):
    torch.manual_seed(0)
    stock = ultralytics.YOLO("yolov8n-pose.yaml").model.eval()
    with torch.no_grad():  # a "trained" stock model: BN statistics away from their init
        for m in stock.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "stock.pt"
    torch.save({"model": stock}, path)
    model = ultralytics.YOLO(fu.model_yaml("n"))
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("ultralytics").addHandler(handler)  # the user's console: ultralytics' own logger
    try:
        model.load(str(path))
    finally:
        logging.getLogger("ultralytics").removeHandler(handler)
    assert any(line.startswith("freqdyn: converted") and "Transferred" in line for line in lines)
    net = model.model.eval()
    dynamic = [m for m in net.modules() if isinstance(m, FDConv)]
    assert dynamic
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[0], stock(x)[0], rtol=1e-4, atol=1e-4)


def test_ultralytics_onnx_exporter_and_onnxruntime(registered, tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    model = ultralytics.YOLO(fu.model_yaml("n"))
    path = model.export(format="onnx", imgsz=64, simplify=False, dynamic=False, verbose=False)  # TorchScript-based
    session = ort.InferenceSession(path)
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    (out, *_) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        expected = model.model.eval()(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-3)


def test_ultralytics_dynamic_onnx_export_runs_at_other_batch_and_image_sizes(registered, tmp_path, monkeypatch):
    """yolo export ... dynamic=True traces at batch 1 and 64x64 (the TorchScript-based exporter) and declares batch,
    height and width dynamic: per-sample kernels must stay per-sample (attentions perturbed, so samples get different
    kernels) and FBM's operators must follow the image size (96x96 failed in a broadcast before)."""
    ort = pytest.importorskip("onnxruntime")
    from helpers import perturb_

    monkeypatch.chdir(tmp_path)
    model = ultralytics.YOLO(fu.model_yaml("n"))
    layers = [m for m in model.model.modules() if isinstance(m, FDConv)]
    assert layers
    for layer in layers:  # the attentions only: samples get their own kernels, activations stay O(1)
        perturb_(layer, scale=0.3)
    path = model.export(format="onnx", imgsz=64, simplify=False, dynamic=True, verbose=False)
    session = ort.InferenceSession(path)
    rng = np.random.default_rng(1)
    for batch, size in ((1, 64), (2, 64), (1, 96), (2, 96)):
        x = rng.random((batch, 3, size, size), dtype=np.float32)
        (out, *_) = session.run(None, {session.get_inputs()[0].name: x})
        with torch.no_grad():
            expected = model.model.eval()(torch.from_numpy(x))[0].numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("version,task", VARIANTS)
@pytest.mark.parametrize("scale", list("nsmlx"))
def test_model_yaml_exists_at_every_scale(scale, version, task):
    from ultralytics.nn.tasks import guess_model_scale

    path = Path(fu.model_yaml(scale, task, version))
    assert path.is_file() and guess_model_scale(path) == scale
    base = path.with_name(path.name.replace(f"{version}{scale}", version))
    assert path.read_text().split("\n", 1)[1] == base.read_text()  # the base file under a one-line header


def test_model_yaml_rejects_unknown_variants():
    for kwargs in (dict(scale="q"), dict(task="obb"), dict(version="yolov5")):
        with pytest.raises(ValueError):
            fu.model_yaml(**kwargs)


@pytest.mark.parametrize("version,task", VARIANTS)
def test_every_yaml_builds_and_takes_the_stock_weights(registered, tmp_path, version, task):
    """Each packaged YAML builds its rows as ours (C3k2's C3k / attention bottlenecks included) and, loaded with
    the stock model's weights (ultralytics' pretrained .load()), computes the stock model's function."""
    from ultralytics.nn import tasks

    suffix = fu.YAML_TASKS[task]
    ours = tasks.yaml_model_load(fu.model_yaml("n", task, version))
    model_class = {"detect": tasks.DetectionModel, "segment": tasks.SegmentationModel, "pose": tasks.PoseModel}[task]
    torch.manual_seed(0)
    stock = model_class(f"{version}n{suffix}.yaml", nc=ours["nc"], verbose=False).eval()  # our class count
    path = tmp_path / "stock.pt"
    torch.save({"model": stock}, path)
    model = ultralytics.YOLO(fu.model_yaml("n", task, version))
    row = fu.C2f_FDConv if version == "yolov8" else fu.C3k2_FDConv
    rows = [m for m in model.model.model if type(m) is row]
    assert len(rows) == 4
    model.load(str(path))
    net = model.model.eval()
    assert sum(isinstance(m, FDConv) for m in net.modules()) >= 4
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, expected = net(x), stock(x)
    if isinstance(out, (tuple, list)):  # (predictions, extras) in eval
        out, expected = out[0], expected[0]
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("version,task", VARIANTS)
def test_freqdyn_yolo_cli_trains_every_yaml(tmp_path, version, task):
    from freqdyn.cli import main

    data = _dataset(tmp_path / task, task)
    try:
        assert (
            main(
                [
                    "yolo",
                    task,
                    "train",
                    f"model={fu.model_yaml('n', task, version)}",
                    f"data={data}",
                    "epochs=1",
                    "imgsz=64",
                    "batch=2",
                    "device=cpu",
                    "workers=0",
                    "plots=False",
                    "amp=False",
                    "optimizer=SGD",
                    "val=False",
                    f"project={tmp_path / 'runs'}",
                    "name=cli",
                    "exist_ok=True",
                ]
            )
            == 0
        )
    finally:
        fu.unregister()
    weights = tmp_path / "runs" / "cli" / "weights" / "last.pt"
    assert weights.exists()
    reloaded = ultralytics.YOLO(str(weights))
    row = fu.C2f_FDConv if version == "yolov8" else fu.C3k2_FDConv
    assert any(type(m) is row for m in reloaded.model.modules())


def test_layer_table_and_gflops_tell_the_truth(registered):
    import logging

    from ultralytics.utils import torch_utils

    from freqdyn import profile

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("ultralytics")
    logger.addHandler(handler)
    try:
        model = ultralytics.YOLO(fu.model_yaml("n"), verbose=True)
    finally:
        logger.removeHandler(handler)
    net = model.model
    rows = {int(line[:3]): line for line in lines if line[:3].strip().isdigit()}
    for i, m in enumerate(net.model):
        assert f"{sum(p.numel() for p in m.parameters()):10.0f}  {m.type}" in rows[i]
    assert sum("C2f_FDConv" in line for line in rows.values()) == 4
    gflops = torch_utils.get_flops(net, 64)  # what model.info() prints
    assert gflops == pytest.approx(profile(net.eval(), (1, 3, 64, 64)).flops / 1e9)
    stock = ultralytics.YOLO("yolov8n-pose.yaml").model
    assert gflops * 1e9 > profile(stock.eval(), (1, 3, 64, 64)).flops  # the FDConv layers are counted


def test_plain_yolo_cli_resumes_without_register(tmp_path):
    """An interrupted run resumes with ultralytics' own CLI in a fresh process that never calls register()."""
    data = _dataset(tmp_path / "pose")
    fu.register()
    try:
        model = ultralytics.YOLO(fu.model_yaml("n"))

        def stop_after_first_epoch(trainer):
            raise KeyboardInterrupt  # after last.pt of epoch 0 is saved

        model.add_callback("on_fit_epoch_end", stop_after_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            model.train(
                data=str(data),
                epochs=2,
                imgsz=64,
                batch=2,
                device="cpu",
                workers=0,
                plots=False,
                amp=False,
                optimizer="SGD",
                project=str(tmp_path / "runs"),
                name="r",
                exist_ok=True,
                val=False,
                verbose=False,
            )
    finally:
        fu.unregister()
    last = tmp_path / "runs" / "r" / "weights" / "last.pt"
    assert last.exists()
    yolo = Path(sys.executable).with_name("yolo")
    command = (
        [str(yolo), "pose", "train", "resume", f"model={last}"]
        if yolo.exists()
        else [sys.executable, "-c", f"from ultralytics import YOLO; YOLO({str(last)!r}).train(resume=True)"]
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "KeyError" not in done.stderr
    assert torch.load(last, weights_only=False)["epoch"] == -1  # ultralytics marks a finished run


def test_a_ddp_worker_state_loads_in_a_fresh_process(tmp_path):
    """Ultralytics' DDP workers rebuild the trainer from a cloudpickled state holding the built model."""
    cloudpickle = pytest.importorskip("cloudpickle")
    fu.register()
    try:
        model = ultralytics.YOLO(fu.model_yaml("n")).model.eval()
    finally:
        fu.unregister()
    state = tmp_path / "ddp_state.pt"
    torch.save({"model": model}, state, pickle_module=cloudpickle)
    x = torch.rand(1, 3, 64, 64)
    torch.save(x, tmp_path / "x.pt")
    expected = model(x)[0] if isinstance(model(x), (list, tuple)) else model(x)
    script = (
        "import torch\n"
        "from ultralytics.utils.patches import torch_load\n"
        f"model = torch_load({str(state)!r}, map_location='cpu')['model']\n"
        "from ultralytics.nn import tasks\n"
        "assert tasks.parse_model.__module__.startswith('freqdyn.integrations.ultralytics')  # unpickling registered\n"
        f"out = model(torch.load({str(tmp_path / 'x.pt')!r}))\n"
        f"torch.save(out[0] if isinstance(out, (list, tuple)) else out, {str(tmp_path / 'y.pt')!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), expected, rtol=1e-5, atol=1e-5)


def test_training_a_convert_ed_model_is_refused_with_the_fix():
    """The trainer rebuilds the model from model.yaml: freqdyn.convert(YOLO(...).model) then .train() would silently
    train the stock model, so it raises and names the way that keeps the layers (a YAML with freqdyn's rows)."""
    from freqdyn import convert

    model = ultralytics.YOLO("yolov8n-pose.yaml")
    report = convert(model.model, "dyconv", include=r"^model\.[0-9]\.conv$")
    assert report.replaced
    with pytest.raises(ValueError, match=r"rebuilds the model from model\.yaml"):
        model.train(data="coco8-pose.yaml", epochs=1)


def test_gated_rows_say_they_are_plain_in_the_layer_table(registered):
    """An FDConv row that the official gating keeps plain (<= 16 channels) says so in the layer table."""
    import logging

    from ultralytics.nn.tasks import ClassificationModel

    cfg = {
        "nc": 2,
        "backbone": [[-1, 1, "FDConv", [32, 3, 2]], [-1, 1, "FDConv", [64, 3, 1]]],
        "head": [[-1, 1, "Classify", [2]]],
    }
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("ultralytics").addHandler(handler)
    try:
        model = ClassificationModel(cfg, ch=3, verbose=True)
    finally:
        logging.getLogger("ultralytics").removeHandler(handler)
    rows = {int(line[:3]): line for line in lines if line[:3].strip().isdigit()}
    assert "FDConv (plain: gated)" in rows[0] and model.model[0].type == "FDConv (plain: gated)"  # 3 -> 32
    assert "FDConv" in rows[1] and "plain" not in rows[1]  # 32 -> 64: dynamic


def test_freqdyn_analyze_takes_an_ultralytics_checkpoint(registered, tmp_path, capsys):
    """An ultralytics .pt pickles its model: refused with the reason by default, analysed with --trust-checkpoint."""
    pytest.importorskip("matplotlib")
    from freqdyn.cli import main

    model = ultralytics.YOLO(fu.model_yaml("n")).model
    path = tmp_path / "best.pt"
    torch.save({"model": model, "epoch": 3}, path)
    assert main(["analyze", "--out", str(tmp_path), "--size", "64", "--checkpoint", str(path)]) == 2
    assert "--trust-checkpoint" in capsys.readouterr().err
    assert (
        main(
            [
                "analyze",
                "--out",
                str(tmp_path),
                "--size",
                "64",
                "--checkpoint",
                str(path),
                "--trust-checkpoint",
                "--plot-layers",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "loaded the model" in out and "dynamic layers mixes" in out and "kernel 0.000" in out
    assert "Effective receptive field of best.pt's last feature map" in out
    assert (tmp_path / "erf.png").stat().st_size > 0
