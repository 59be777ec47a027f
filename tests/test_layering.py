"""Layering rules that import-linter cannot express (it sees function-level imports too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

RTSEG = Path(__file__).resolve().parents[1] / "rtseg"
HEAVY = ("torch", "PyQt6", "onnxruntime", "openvino", "tensorrt", "cv2")


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:  # module level only, not inside functions
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((RTSEG / "cli").glob("*.py")), ids=lambda p: p.name)
def test_cli_does_not_import_gui_or_frameworks_at_module_level(path):
    bad = {n for n in _module_level_imports(path)
           if n.startswith(("rtseg.gui", "PyQt6", "torch", "onnxruntime", "openvino", "tensorrt"))}
    assert not bad, f"{path.name} imports {bad} at module level; import them inside the function that needs them"


def test_import_rtseg_is_cheap():
    code = ("import sys, rtseg, rtseg.core.meta, rtseg.core.errors, rtseg.runtime.factory, rtseg.cli.export, "
            "rtseg.cli.bench, rtseg.cli.run\n"
            f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("path", sorted((RTSEG / "pipeline").glob("*.py")) + sorted((RTSEG / "runtime").glob("*.py")),
                         ids=lambda p: p.name)
def test_pipeline_and_runtime_never_import_qt(path):
    src = path.read_text()
    assert "PyQt6" not in src and "PySide" not in src


# -- no import cycle among the subpackages, counting imports inside functions -------------------

def _imported_modules(path: Path, package: tuple[str, ...] | None = None) -> set[str]:
    """Every ``rtseg.*`` module a file imports anywhere: module level, inside functions and
    methods, under ``TYPE_CHECKING``; relative imports resolved against the file's package
    (``package``: the subpackage path under rtseg, default where the file lives)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = ["rtseg", *(package if package is not None else path.relative_to(RTSEG).parent.parts)]
    found: set[str] = set()
    for node in ast.walk(tree):  # every node, so function-level imports count too
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
                # ``from rtseg import models`` imports the subpackage rtseg.models
                if node.module == "rtseg":
                    found.update(f"rtseg.{a.name}" for a in node.names if (RTSEG / a.name).is_dir())
    return {m for m in found if m == "rtseg" or m.startswith("rtseg.")}


def subpackage_graph() -> dict[str, dict[str, list[str]]]:
    """``{importer subpackage: {imported subpackage: [modules that import it]}}`` over all of rtseg."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(RTSEG.rglob("*.py")):
        rel = path.relative_to(RTSEG).parts
        if len(rel) < 2:  # rtseg/__init__.py, rtseg/__main__.py: the package's own entry points
            continue
        src = rel[0]
        for mod in _imported_modules(path):
            parts = mod.split(".")
            if len(parts) < 2 or parts[1] == src or not (RTSEG / parts[1]).is_dir():
                continue  # the package itself (rtseg.__version__), or an import within the subpackage
            graph.setdefault(src, {}).setdefault(parts[1], []).append(str(path.relative_to(RTSEG.parent)))
    return graph


def _find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, {})):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if state.get(m) is None and (c := visit(m)) is not None:
                return c
        path.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if state.get(n) is None and (c := visit(n)) is not None:
            return c
    return None


def test_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path):
    """The walker sees an import inside a function body, and the search reports the cycle."""
    src = tmp_path / "mod.py"
    src.write_text("def f():\n    from rtseg.export import artifacts\n    from ..pipeline import sink\n"
                   "    return artifacts, sink\n")
    assert {"rtseg.export", "rtseg.pipeline"} <= _imported_modules(src, ("runtime",))
    graph = {"runtime": {"export": ["rtseg/runtime/x.py"]}, "export": {"runtime": ["rtseg/export/y.py"]}}
    assert _find_cycle(graph) == ["export", "runtime", "export"]
    assert _find_cycle({"a": {"b": []}, "b": {"c": []}}) is None


def test_subpackages_import_each_other_without_cycles():
    graph = subpackage_graph()
    assert "runtime" in graph and "cli" in graph  # the walk saw the package
    cycle = _find_cycle(graph)
    if cycle is not None:
        hops = "; ".join(f"{a} -> {b} (in {', '.join(sorted(set(graph[a][b])))})"
                         for a, b in zip(cycle, cycle[1:], strict=False))
        pytest.fail(f"import cycle among rtseg subpackages: {' -> '.join(cycle)}: {hops}")


def test_layers_are_those_the_design_states():
    """The layer order of docs/DESIGN.md, checked on the same graph (lower layers never import higher)."""
    layers = [["core"], ["models"], ["runtime", "data"], ["pipeline", "eval"], ["benchmark"], ["export", "train"],
              ["resolve"], ["gui"], ["cli"]]
    rank = {p: i for i, layer in enumerate(layers) for p in layer}
    graph = subpackage_graph()
    assert set(graph) <= set(rank), f"subpackages without a layer: {set(graph) - set(rank)}"
    bad = [f"{a} -> {b} ({', '.join(sorted(set(files)))})" for a, deps in graph.items() for b, files in deps.items()
           if rank[b] >= rank[a]]
    assert not bad, "imports that go up or sideways a layer: " + "; ".join(bad)
