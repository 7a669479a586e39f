"""Models by name, for the command line and the benchmarks: torchvision's and timm's, randomly initialised."""
from __future__ import annotations

import importlib
import importlib.util
import inspect

import torch.nn as nn


def build_model(name: str) -> nn.Module:
    """A randomly initialised model by name: torchvision's (classification, detection, segmentation) or timm's."""
    try:
        import torchvision
    except ImportError:
        torchvision = None
    if torchvision is not None and name in torchvision.models.list_models():
        builder = torchvision.models.get_model_builder(name)
        options = {"weights": None}
        if "weights_backbone" in inspect.signature(builder).parameters:
            options["weights_backbone"] = None  # nothing is downloaded
        return builder(**options)
    timm = importlib.import_module("timm") if importlib.util.find_spec("timm") else None
    if timm is not None and timm.is_model(name):
        return timm.create_model(name, pretrained=False)
    raise ValueError(f"unknown model {name!r}: give a torchvision name (torchvision.models.list_models()) or a "
                     "timm name (timm.list_models()); install them with pip install 'freqdyn[vision,timm]'")
