"""Write the pickles test_pickles.py unpickles: a model holding every freqdyn layer (``torch.save(model)``) and an
ultralytics ``last.pt`` holding every row of the integration, each with inputs and the outputs it computed.

They name the module paths of the commit they were made at (see README.md); later commits must keep loading them.
Run from the repository root: ``python tests/pickles/make_pickles.py``.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "properties")]

from test_state import LAYERS, trained_state  # noqa: E402

import freqdyn  # noqa: E402
from freqdyn import DCNv3, FDConv, UniConvNet  # noqa: E402

TINY_YOLO = """nc: 1
kpt_shape: [17, 3]
backbone:
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, FDConv, [32, 3, 2]]
  - [-1, 1, C2f_FDConv, [32, True]]
  - [-1, 1, DynamicConv, [48, 3, 2]]
  - [-1, 1, C3k2_FDConv, [48, True, 0.25]]
  - [-1, 1, ODConv, [64, 3, 2]]
  - [-1, 1, CondConv, [64, 1, 1]]
head:
  - [[-1, 4], 1, FreqFusionConcat, [1]]
  - [-1, 1, C2f, [48]]
  - [[8, 6], 1, Pose, [nc, kpt_shape]]
"""


def layer_model() -> tuple[nn.Module, dict]:
    model = nn.ModuleDict({name.replace("-", "_"): trained_state(name) for name in LAYERS})
    torch.manual_seed(5)
    model["uniconvnet"] = UniConvNet(depths=(1, 1, 1, 1), dims=(16, 32, 48, 64), num_classes=3).eval()
    model["dcnv3"] = DCNv3(16, group=2).eval()
    model["fdconv_layer_norm"] = FDConv(24, 24, 3, padding=1, kernel_num=4, attention_norm="layer").eval()
    torch.manual_seed(6)
    inputs = {name: LAYERS[name].inputs() for name in LAYERS}
    inputs["uniconvnet"] = (torch.randn(1, 3, 64, 64),)
    inputs["dcnv3"] = (torch.randn(1, 9, 9, 16),)
    inputs["fdconv_layer_norm"] = (torch.randn(1, 24, 7, 7),)
    return model, inputs


def outputs(model: nn.ModuleDict, inputs: dict) -> dict:
    result = {}
    with torch.no_grad():
        for name, args in inputs.items():
            out = model[name.replace("-", "_")](*args)
            out = out if isinstance(out, (tuple, list)) else [out]
            result[name] = [t for t in out if isinstance(t, torch.Tensor)]
    return result


def yolo_last(root: Path) -> Path:
    import cv2
    import ultralytics

    from freqdyn.integrations import ultralytics as fu

    fu.register()
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(2):
            image = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
            image[10:40, 12:44] = 220
            cv2.imwrite(str(root / "images" / split / f"{i}.jpg"), image)
            kpts = " ".join(f"{0.2 + 0.03 * j:.3f} {0.2 + 0.02 * j:.3f} 2" for j in range(17))
            (root / "labels" / split / f"{i}.txt").write_text(f"0 0.4375 0.3906 0.5 0.4688 {kpts}\n")
    data = root / "data.yaml"
    data.write_text(
        f"path: {root}\ntrain: images/train\nval: images/val\nkpt_shape: [17, 3]\n"
        "flip_idx: [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]\nnames:\n  0: person\n"
    )
    cfg = root / "tiny-pose.yaml"
    cfg.write_text(TINY_YOLO)
    ultralytics.YOLO(str(cfg)).train(
        data=str(data),
        epochs=1,
        imgsz=64,
        batch=2,
        device="cpu",
        workers=0,
        plots=False,
        amp=False,
        project=str(root / "runs"),
        name="t",
        val=False,
        verbose=False,
    )
    return root / "runs" / "t" / "weights" / "last.pt"


def main() -> None:
    import shutil
    import tempfile

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    model, inputs = layer_model()
    torch.save(
        {
            "model": model,
            "inputs": inputs,
            "outputs": outputs(model, inputs),
            "commit": commit,
            "version": freqdyn.__version__,
        },
        HERE / "layers.pt",
    )
    with tempfile.TemporaryDirectory() as tmp:
        last = yolo_last(Path(tmp))
        shutil.copy(last, HERE / "yolo_last.pt")
    from ultralytics import YOLO

    yolo = YOLO(str(HERE / "yolo_last.pt")).model.float().eval()
    torch.manual_seed(7)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = yolo(x)[0]
    torch.save({"input": x, "output": y, "commit": commit}, HERE / "yolo_last_io.pt")


if __name__ == "__main__":
    main()
