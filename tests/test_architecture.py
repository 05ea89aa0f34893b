"""The layering of docs/architecture.md, checked on the source: every import statement in
src/robustlab (module level or inside a function) must point to the same or a lower layer, no
two modules may import each other, directly or through others, and no two packages may import
from each other (robustlab.X imports from robustlab.Y and Y from X, whatever the modules).

Plugin packages are imported by name in `robustlab.plugins.load_plugins()` (importlib, like
entry points); that is how the registries are filled and is not an import dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "robustlab"

# Lowest first. A module belongs to the first layer with a prefix that matches its name.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("robustlab", "robustlab.registry", "robustlab.plugins", "robustlab.common",
     "robustlab.accel"),
    # the plugins; a defense receives the modules it needs (it opens no run folder)
    ("robustlab.data", "robustlab.models", "robustlab.attacks", "robustlab.defenses"),
    # runs on disk (folder, safetensors files) and a run rebuilt from its config: data,
    # model (+ defense, with the models of the run folders its options name), weights
    ("robustlab.runs", "robustlab.zoo"),  # the zoo: pretrained models on disk
    ("robustlab.training", "robustlab.evaluation", "robustlab.certification"),
    ("robustlab.reporting", "robustlab.experiments"),
    ("robustlab.catalog", "robustlab.cli", "robustlab.__main__"),
)
# reporting reads result files only: it may import the foundation layer and nothing else
FILE_READERS = {"robustlab.reporting": LAYERS[0]}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or (name.startswith(prefix + ".") and prefix != "robustlab")


def layer_of(name: str) -> int:
    best: tuple[int, int] | None = None  # (prefix length, layer): the longest prefix wins
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if _matches(name, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), rank)
    if best is None:
        raise AssertionError(f"module {name} is in no layer of tests/test_architecture.py")
    return best[1]


def _targets(module: str, node: ast.Import | ast.ImportFrom, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix
                 for a in node.names]
    out = []
    for name in names:
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES and name != module:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module].update(_targets(module, node, path.name == "__init__.py"))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def package_of(module: str) -> str:
    """`robustlab.X` for any module of package X (or the module robustlab.X itself)."""
    return ".".join(module.split(".")[:2])


def package_ties(graph: dict[str, set[str]]) -> list[str]:
    """Pairs of packages that import from each other, each with one import of either way."""
    edges: dict[tuple[str, str], str] = {}
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            pair = (package_of(module), package_of(target))
            if pair[0] != pair[1]:
                edges.setdefault(pair, f"{module} imports {target}")
    return [f"{a} <-> {b}: {edges[a, b]}; {edges[b, a]}"
            for (a, b) in sorted(edges) if a < b and (b, a) in edges]


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_two_way_package_tie():
    """No package imports from a package that imports from it, at any module depth and
    counting imports inside functions (e.g. defenses <-> runs, when the autoencoder defense
    opened run folders itself)."""
    assert package_ties(import_graph()) == []


def test_no_upward_import():
    upward = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
              for a, targets in import_graph().items() for b in sorted(targets)
              if layer_of(b) > layer_of(a)]
    assert upward == []


def test_reporting_reads_files_only():
    graph = import_graph()
    for reader, allowed in FILE_READERS.items():
        bad = [f"{a} imports {b}" for a, targets in graph.items() if _matches(a, reader)
               for b in sorted(targets) if not _matches(b, reader)
               and not any(_matches(b, p) for p in allowed)]
        assert bad == []


def test_the_checker_sees_cycles_and_upward_imports():
    """The checks above would fail on the faults they look for."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert layer_of("robustlab.defenses.autoencoder") < layer_of("robustlab.runs.folder")
    assert layer_of("robustlab.defenses.autoencoder") < layer_of("robustlab.runs.load")
    assert package_ties({"robustlab.a.x": {"robustlab.b.y"}, "robustlab.b.z": {"robustlab.a"},
                         "robustlab.a": set(), "robustlab.b.y": set()}) == [
        "robustlab.a <-> robustlab.b: robustlab.a.x imports robustlab.b.y; "
        "robustlab.b.z imports robustlab.a"]
    assert package_ties({"robustlab.a.x": {"robustlab.a.y", "robustlab.b"},
                         "robustlab.b": set()}) == []
    assert layer_of("robustlab.training.loop") > layer_of("robustlab.runs.load")
    assert layer_of("robustlab") == 0
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("elsewhere.module")


def test_relative_imports_resolve():
    node = ast.parse("from .common import NormalizedClassifier").body[0]
    assert _targets("robustlab.models", node, is_package=True) == ["robustlab.models.common"]


# The attack algorithms' core loops, kept whole so each reads like its paper's pseudo-code.
LONG_FUNCTIONS_ALLOWED = {
    ("robustlab.attacks.apgd", "apgd_run"),
    ("robustlab.attacks.pgd", "pgd_run"),
    ("robustlab.attacks.cw", "perturb"),
}
MAX_FUNCTION_LINES = 60


def test_no_function_over_60_lines():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and (module, node.name) not in LONG_FUNCTIONS_ALLOWED:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert long == []
