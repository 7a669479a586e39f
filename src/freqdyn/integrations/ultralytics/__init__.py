"""Use freqdyn blocks by name in ultralytics YOLO model YAMLs, without editing ultralytics.

    from . import ultralytics as fu
    fu.register()                                   # once per process that parses YAMLs
    model = YOLO(fu.model_yaml("n"))                # the seed's yolov8-pose with C2f_FDConv

Row names added: ``C2f_FDConv`` (a C2f whose bottleneck 3x3 convs are FDConv), ``C3k2_FDConv`` (YOLO11's C3k2,
likewise), ``FDConv``, ``DynamicConv``,
``CondConv`` and ``ODConv`` (drop-ins for ``Conv``: the dynamic conv + BN + activation), and
``FreqFusionConcat`` (replaces an ``nn.Upsample`` row and the ``Concat`` after it: ``[[-1, 6], 1,
FreqFusionConcat, [1]]`` fuses the lr map -1 into the hr map 6 with FreqFusion). Ultralytics has
no plug-in hook and injects channel counts only for its own classes, so :func:`register` wraps
``ultralytics.nn.tasks.parse_model``: such rows are built as the stock ``C2f`` / ``Conv`` (so width /
depth scaling and channel bookkeeping are ultralytics' own) and then converted. Our blocks are not
``Conv`` subclasses, so ``model.fuse()`` leaves them alone (it would fold BN into a weight that FDConv
does not have). Saved checkpoints pickle these classes: ``freqdyn`` must be importable to load them.
Pretrained stock weights load into such a model (``YOLO(model_yaml("s")).load("yolov8s-pose.pt")``, or
``pretrained=`` when training): :func:`register` also extends ``BaseModel.load`` so that every dynamic
layer takes the stock conv weight it replaces by conversion (attention neutral), where ultralytics' own
shape-matching transfer would drop it. It also makes ``model.info()`` tell the truth: the layer table shows
our rows with their own names and parameter counts, and the GFLOPs are counted by :func:`freqdyn.profile`
(thop sees no arithmetic in our layers). From the shell, ``freqdyn yolo ...`` is ultralytics' ``yolo`` CLI
with :func:`register` applied (train, resume, val, predict, export). ``model.export(format="onnx")`` (the
TorchScript-based exporter) works: while tracing, our layers use no FFT operators. Importing this module
registers (so does unpickling a checkpoint with our rows, which imports it): resuming with ultralytics' own
``yolo ... resume`` / ``train(resume=True)`` needs no :func:`register` call, and ultralytics' DDP workers,
which load the built model from a cloudpickled trainer state, register the same way.
Note that ultralytics applies weight decay to every non-norm, non-bias parameter (``dft_weight`` included)
and, with ``optimizer='auto'`` on long runs, MuSGD to 2-D / 4-D parameters; pass ``optimizer='SGD'`` or
``'AdamW'`` to keep the spectral weights out of Muon.
"""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path

from ._patches import ROWS, register, unregister
from .rows import C2f_FDConv, C3k2_FDConv, DynamicConvBNAct, FreqFusionConcat

__all__ = [
    "ROWS",
    "YAML_TASKS",
    "YAML_VERSIONS",
    "C2f_FDConv",
    "C3k2_FDConv",
    "DynamicConvBNAct",
    "FreqFusionConcat",
    "model_yaml",
    "register",
    "unregister",
]

YAML_TASKS = {"detect": "", "segment": "-seg", "pose": "-pose"}
YAML_VERSIONS = {"yolov8": "C2f_FDConv", "yolo11": "C3k2_FDConv"}


def model_yaml(scale: str = "n", task: str = "pose", version: str = "yolov8") -> str:
    """Path of a packaged YAML: ultralytics' ``{version}{scale}{-seg|-pose}.yaml`` with its backbone's C2f (YOLOv8)
    or C3k2 (YOLO11) rows as C2f_FDConv / C3k2_FDConv; the default is the seed's yolov8{scale}-pose-C2f_FDConv.

    Args:
        scale: n, s, m, l or x (ultralytics reads it from the file name).
        task: ``'detect'``, ``'segment'`` or ``'pose'`` (nc 1, kpt_shape [17, 3]).
        version: ``'yolov8'`` or ``'yolo11'``.
    """
    if scale not in "nsmlx" or len(scale) != 1:
        raise ValueError(f"scale must be one of n, s, m, l, x, got {scale!r}")
    if task not in YAML_TASKS:
        raise ValueError(f"task must be one of {sorted(YAML_TASKS)}, got {task!r}")
    if version not in YAML_VERSIONS:
        raise ValueError(f"version must be one of {sorted(YAML_VERSIONS)}, got {version!r}")
    name = f"{version}{scale}{YAML_TASKS[task]}-{YAML_VERSIONS[version]}.yaml"
    return str(Path(str(resources.files(__name__) / "cfg" / name)))


if importlib.util.find_spec("ultralytics") is not None:
    # Importing this module registers the rows. Unpickling a checkpoint or DDP state that holds them imports it,
    # so a resumed run (``yolo ... resume``, ``YOLO("last.pt").train(resume=True)``) and DDP workers know the
    # rows without a register() call of their own.
    register()
