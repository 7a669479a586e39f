"""Models by name, for the command line and the benchmarks: torchvision's and timm's, randomly initialised."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from types import ModuleType

import torch
import torch.nn as nn


class TorchvisionPairError(ImportError):
    """An installed torchvision that does not work with the installed torch; the message names the pair to install."""


def paired_torchvision(torch_version: str) -> str:
    """The torchvision release series built for ``torch_version``: torch 2.N pairs with torchvision 0.(N + 15)."""
    major, minor = (int(part) for part in torch_version.split("+")[0].split(".")[:2])
    return f"0.{minor + 15}" if major == 2 else "(see pytorch.org)"


def import_torchvision() -> ModuleType | None:
    """torchvision, or None where it is not installed; a torchvision that fails to import beside this torch, or was
    built for another torch, raises :class:`TorchvisionPairError` saying which one to install.
    """
    if importlib.util.find_spec("torchvision") is None:
        return None
    wanted, release = paired_torchvision(torch.__version__), torch.__version__.split("+")[0]
    advice = (
        f"install the torchvision built for your torch {torch.__version__}: pip install "
        f"'torchvision=={wanted}.*' (or move both: pip install torch=={release} 'torchvision=={wanted}.*')"
    )
    try:
        torchvision = importlib.import_module("torchvision")
    except Exception as error:  # a CUDA / CPU or version mismatch fails inside torchvision's own import
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TorchvisionPairError(
            f"torchvision does not import beside torch {torch.__version__} ({first}): {advice}"
        ) from error
    found = ".".join(torchvision.__version__.split("+")[0].split(".")[:2])
    if found != wanted:
        raise TorchvisionPairError(
            f"torchvision {torchvision.__version__} was built for another torch than {torch.__version__}: {advice}"
        )
    return torchvision


def build_model(name: str) -> nn.Module:
    """A randomly initialised model by name: torchvision's (classification, detection, segmentation) or timm's."""
    torchvision = import_torchvision()
    if torchvision is not None and name in torchvision.models.list_models():
        builder = torchvision.models.get_model_builder(name)
        options = {"weights": None}
        if "weights_backbone" in inspect.signature(builder).parameters:
            options["weights_backbone"] = None  # nothing is downloaded
        return builder(**options)
    timm = importlib.import_module("timm") if importlib.util.find_spec("timm") else None
    if timm is not None and timm.is_model(name):
        return timm.create_model(name, pretrained=False)
    raise ValueError(
        f"unknown model {name!r}: give a torchvision name (torchvision.models.list_models()) or a "
        "timm name (timm.list_models()); install them with pip install 'freqdyn[vision,timm]'"
    )
