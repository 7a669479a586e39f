"""Every test and docstring example starts from seed 0. ``python -m pytest`` also runs the ``Examples:`` of the
library's docstrings (``--doctest-modules`` over ``src/freqdyn``, with ``torch`` in their namespace); integrations
whose host library is missing are not collected."""

import importlib.util

import pytest
import torch

collect_ignore_glob = [
    f"src/freqdyn/integrations/{name}*"
    for name in ("ultralytics", "mmengine", "timm")
    if importlib.util.find_spec(name) is None
]


@pytest.fixture(autouse=True)
def _seed(doctest_namespace: dict) -> None:
    doctest_namespace["torch"] = torch
    torch.manual_seed(0)
