"""The rules of docs/architecture.md, read from the imports of ``src/`` (``ast``: every import, lazy ones included).

Each rule is a function of the import graph that returns its violations, so that a test of the test can show it
failing on a graph with one deliberate violation.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ROOT

SRC = ROOT / "src"
DOCS = ROOT / "docs" / "architecture.md"
FAMILIES = ("fdconv", "kernel_bank", "kernel_warehouse", "freqfusion", "uniconvnet")
CORE = (
    "freqdyn",
    "freqdyn.layers",
    "freqdyn.models",
    "freqdyn.targets",
    "freqdyn.convert",
    "freqdyn.checkpoint",
    "freqdyn.profile",
    "freqdyn.analysis",
    "freqdyn.version",
    "freqdyn.tools",
)  # and everything below them
PROGRAM_MODE = SRC / "freqdyn" / "layers" / "_common" / "program_mode.py"
QUERIES = ("exporting", "compiling", "functorch_active")

Graph = dict[str, set[str]]


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(path): path for path in sorted((SRC / "freqdyn").rglob("*.py"))}


def _import_time_nodes(nodes: list[ast.stmt]) -> Iterator[ast.AST]:
    """The nodes that run when the module is imported: not function bodies, not ``if TYPE_CHECKING:`` blocks."""
    for node in nodes:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _import_time_nodes(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from _import_time_nodes(getattr(node, field, []))


def _imports(name: str, path: Path, known: set[str], import_time: bool = False) -> Iterator[str]:
    """The freqdyn modules ``path`` imports (``import_time``: only at import, not in functions or type-checking
    blocks): ``from X import y`` names X.y where that is a module, else X."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(path.read_text())
    for node in _import_time_nodes(tree.body) if import_time else ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("freqdyn"))
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] != "freqdyn":
                continue
            for alias in node.names:
                yield f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target


def import_graph(import_time: bool = False) -> Graph:
    """Module -> the freqdyn modules it imports: every import, or (``import_time``) those that run at import."""
    modules = _modules()
    return {name: set(_imports(name, path, set(modules), import_time)) - {name} for name, path in modules.items()}


def _family(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "layers" and parts[2] in FAMILIES else None


def families_import_no_family(graph: Graph) -> list[str]:
    """A family (``layers/<family>/``) imports no other family, and the floor (``layers/_common``) none at all."""
    found = []
    for module, targets in graph.items():
        own = _family(module)
        floor = module.startswith("freqdyn.layers._common")
        for target in targets:
            other = _family(target)
            if other is not None and (floor or (own is not None and other != own)):
                found.append(f"{module} imports {target}")
    return found


def outside_reads_public_names(graph: Graph) -> list[str]:
    """Outside ``layers/`` a module imports ``freqdyn.layers``, ``layers.catalog`` or a family package, never the
    floor (``layers._common``) or a module inside a family; ``tools/reference`` (the naive implementations that
    tests compare against, written beside the code they check) is the one exception."""
    found = []
    for module, targets in graph.items():
        if module.startswith(("freqdyn.layers", "freqdyn.tools.reference")):
            continue
        for target in targets:
            deep = _family(target) is not None and len(target.split(".")) > 3
            if target.startswith("freqdyn.layers._common") or deep:
                found.append(f"{module} imports {target}")
    return found


def core_imports_no_integration(graph: Graph) -> list[str]:
    """The core (layers, models, targets, convert, checkpoint, profile, analysis, tools) imports no integration:
    integrations hook into the core, never the reverse (the CLI, an application, may start one)."""
    core = [m for m in graph if m in CORE or m.startswith(tuple(c + "." for c in CORE[1:]))]
    return [f"{m} imports {t}" for m in core for t in graph[m] if t.startswith("freqdyn.integrations")]


def import_cycles(graph: Graph) -> list[str]:
    """Cycles among modules in an import-time graph (a package's ``__init__`` re-exporting its own modules is not
    one: only imports that leave a package can close a circle; a lazy import in a function cannot)."""

    def edges(module: str) -> set[str]:
        return {t for t in graph.get(module, ()) if not t.startswith(module + ".")}

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in edges(module):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(" -> ".join(sorted(component)))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def program_mode_askers() -> dict[str, set[str]]:
    """Each program-mode question (the three queries, and every public function of ``program_mode.py`` built on
    them) -> the files under ``layers/`` that call it."""
    tree = ast.parse(PROGRAM_MODE.read_text())
    questions = set(QUERIES)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            called = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            if called & set(QUERIES):
                questions.add(node.name)
    askers: dict[str, set[str]] = {q: set() for q in questions}
    layers = SRC / "freqdyn" / "layers"
    for path in sorted((SRC / "freqdyn").rglob("*.py")):
        if path == PROGRAM_MODE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", None))
                if name in askers:
                    askers[name].add(str(path.relative_to(layers)) if path.is_relative_to(layers) else str(path))
    return askers


TORCH_QUERIES = (
    "torch.compiler.is_compiling",
    "torch.compiler.is_exporting",
    "torch.jit.is_tracing",
    "torch.onnx.is_in_onnx_export",
    "torch._dynamo.is_compiling",
    "torch._C._are_functorch_transforms_active",
)


def torch_mode_queries() -> list[str]:
    """Calls of torch's own program-mode queries outside ``program_mode.py``: each question is asked there once, by
    name, so that it cannot be spelled two ways (a trace check that forgets ``torch.export``)."""
    found = []
    for path in sorted((SRC / "freqdyn").rglob("*.py")):
        if path == PROGRAM_MODE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in TORCH_QUERIES:
                found.append(f"{path.relative_to(SRC)}:{node.lineno} calls {ast.unparse(node.func)}")
    return found


def dispatch_table(text: str) -> dict[str, set[str]]:
    """The program-mode table of docs/architecture.md: question -> the files its row names."""
    section = text.split("## Program-mode dispatch", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\|\s*`(\w+)\(\)`[^|]*\|([^|]*)\|", line)
        if match:
            rows[match.group(1)] = set(re.findall(r"`([\w/]+\.py)`", match.group(2)))
    return rows


def test_families_import_no_other_family():
    assert families_import_no_family(import_graph()) == []


def test_outside_the_layers_only_public_names_are_read():
    assert outside_reads_public_names(import_graph()) == []


def test_the_core_imports_no_integration():
    assert core_imports_no_integration(import_graph()) == []


def test_no_import_cycle():
    assert import_cycles(import_graph(import_time=True)) == []


def test_program_modes_are_asked_through_program_mode_only():
    assert torch_mode_queries() == []


def test_the_dispatch_table_names_exactly_the_files_that_ask():
    assert dispatch_table(DOCS.read_text()) == program_mode_askers()


@pytest.mark.parametrize(
    "rule,edge",
    [
        (families_import_no_family, ("freqdyn.layers.fdconv.conv", "freqdyn.layers.kernel_bank.expert_conv")),
        (families_import_no_family, ("freqdyn.layers._common.modulation", "freqdyn.layers.fdconv")),
        (outside_reads_public_names, ("freqdyn.analysis", "freqdyn.layers._common.checks")),
        (outside_reads_public_names, ("freqdyn.profile", "freqdyn.layers.fdconv.spectrum")),
        (core_imports_no_integration, ("freqdyn.convert", "freqdyn.integrations.ultralytics")),
        (import_cycles, ("freqdyn.targets", "freqdyn.convert")),
    ],
)
def test_each_rule_fails_on_a_deliberate_violation(rule, edge):
    graph = import_graph(import_time=rule is import_cycles)
    module, target = edge
    assert rule(graph) == []
    graph[module] = graph[module] | {target}
    assert rule(graph), f"{rule.__name__} missed {module} -> {target}"


def test_the_table_check_fails_on_a_missing_or_extra_file():
    table = dispatch_table(DOCS.read_text())
    askers = program_mode_askers()
    question = sorted(table)[0]
    assert {**table, question: table[question] - {sorted(table[question])[0]}} != askers
    assert {**table, question: table[question] | {"fdconv/conv.py", "nowhere.py"}} != askers
