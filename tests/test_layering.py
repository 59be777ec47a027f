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
