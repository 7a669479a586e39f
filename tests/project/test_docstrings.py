"""Docstrings as contracts: every public layer says what it is in one line, then its arguments, the shapes it takes
and returns, how it differs from the code it reimplements (with the docs page that says more), and a runnable
example (run by pytest's doctest collection over src/freqdyn)."""

import inspect

import pytest

import freqdyn
from helpers import public_layers


@pytest.mark.parametrize("name", sorted(public_layers()))
def test_a_public_layers_docstring_is_a_contract(name):
    layer = getattr(freqdyn, name)
    doc = inspect.getdoc(layer) or ""
    summary, _, rest = doc.partition("\n")
    assert summary.strip() and rest.startswith("\n"), f"{layer.__name__}: a one-line summary, then a blank line"
    for section in ("Args:", "Shape:", "Examples:"):
        assert f"\n{section}\n" in doc, f"{layer.__name__} has no {section} section"
    for line in doc.split("\nShape:\n", 1)[1].split("\n\n", 1)[0].splitlines():
        assert line.startswith(("    - Input", "    - Output", "        ")), f"{layer.__name__}: {line!r}"
    if layer.__name__ in OWN:
        return
    differs = [p for p in doc.split("\n\n") if p.startswith("Differs from")]
    assert len(differs) == 1 and "(docs/" in differs[0], f"{layer.__name__}: no 'Differs from ...' with its docs page"
    assert len([line for line in differs[0].splitlines() if line.lstrip().startswith("- ")]) <= 3


OWN = {"FreqFusionFPN": "a neck freqdyn builds around FreqFusion for mmdet's and torchvision's FPN interfaces"}
