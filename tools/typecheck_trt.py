"""Type-check rtseg's TensorRT code against the installed ``tensorrt-stubs``.

The stubs package (generated from TensorRT's pybind11 bindings) ships its
``.pyi`` files without a ``py.typed`` marker and with a few lines that are not
valid Python (a parameter named ``in``, a required parameter after defaulted
ones, a module attribute ``bool`` that shadows the builtin), so mypy would either skip it (every TensorRT call becomes ``Any`` and
nothing is checked) or stop on the syntax errors. This script copies the
stubs into ``build/trt-stubs`` with those lines repaired, points mypy at them,
and runs mypy on the TensorRT files with strict settings.

    .venv/bin/python tools/typecheck_trt.py            # exit status = mypy's
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = [
    "rtseg/runtime/trt_compat.py",
    "rtseg/runtime/engine_file.py",
    "rtseg/export/tensorrt_build.py",
    "rtseg/export/engine_cache.py",
    "rtseg/runtime/tensorrt_backend.py",
]
OUT = REPO / "build" / "trt-stubs"


def _split_params(params: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in params:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


_DEF = re.compile(r"^(\s*def \w+\()(.*)(\)\s*->.*)$")


def repair_line(line: str) -> str:
    if line.startswith("bool: "):
        # ``tensorrt.bool`` (a DataType alias) shadows the builtin in every
        # ``-> bool`` of the stub, turning them into invalid types. rtseg never
        # uses ``tensorrt.bool``; the checked copy renames it.
        return "bool_" + line[4:]
    m = _DEF.match(line)
    if not m:
        return line
    params = _split_params(m.group(2))
    fixed, seen_default = [], False
    for p in params:
        p = re.sub(r"^(\s*)in:", r"\1in_:", p)  # ``in`` is a keyword
        name = p.strip()
        if name.startswith("*") or name == "/":
            seen_default = False if name.startswith("*") else seen_default
        elif "=" in p:
            seen_default = True
        elif seen_default:
            p += " = ..."  # required-after-default is a syntax error; the binding takes it by keyword
        fixed.append(p)
    return m.group(1) + ",".join(fixed) + m.group(3)


def prepare_stubs() -> Path:
    site = Path(sysconfig.get_paths()["purelib"])
    found = False
    for pkg in ("tensorrt", "tensorrt_bindings"):
        src = site / pkg
        if not (src / "__init__.pyi").is_file():
            continue
        found = True
        dst = OUT / pkg
        dst.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.pyi"):
            text = "\n".join(repair_line(line) for line in f.read_text(encoding="utf-8").splitlines())
            (dst / f.name).write_text(text + "\n", encoding="utf-8")
    if not found:
        sys.exit("tensorrt-stubs is not installed: `.venv/bin/pip install --no-deps tensorrt-stubs`")
    return OUT


def main() -> int:
    stubs = prepare_stubs()
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
           "--strict", "--no-warn-unused-ignores", "--follow-imports=silent", *FILES]
    env = {**__import__("os").environ, "MYPYPATH": str(stubs)}
    return subprocess.call(cmd, cwd=REPO, env=env)


if __name__ == "__main__":
    sys.exit(main())
