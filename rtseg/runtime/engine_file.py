"""A built TensorRT engine on disk: its JSON sidecar and whether it fits this machine.

An engine (``.engine``, TensorRT's serialized plan) is valid only for the exact
TensorRT version and GPU architecture it was built on. Its JSON sidecar
(beside it, never inside the opaque plan) records those, the model metadata
and the I/O. Loading reads the sidecar first and compares it with the running
TensorRT and GPU *before* deserialising, so a mismatch is a one-line message
saying what differs and how to rebuild instead of a TensorRT crash.

This is the part of the engine cache a backend needs to *load* an engine; how
engines are named, keyed and published lives with the builder in
``rtseg.export.engine_cache``. No TensorRT import here: plain data and files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtseg.core.errors import BackendError

SIDECAR_SCHEMA = 1
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class Platform:
    """The TensorRT + GPU an engine is built for (or is being loaded on)."""

    trt_version: str  # "10.13.0.35"
    gpu_name: str  # "NVIDIA H100 80GB HBM3"
    compute_capability: str  # "9.0"
    driver: str = "unknown"
    cuda: str = "unknown"

    @property
    def sm(self) -> str:
        return self.compute_capability.replace(".", "")

    @property
    def trt_short(self) -> str:
        """major.minor: engines are not portable across TensorRT minor versions either."""
        return ".".join(self.trt_version.split(".")[:2])


def sidecar_path(engine: str | os.PathLike[str]) -> Path:
    return Path(engine).with_suffix(SIDECAR_SUFFIX)


def read_sidecar(engine: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of ``engine``; ``BackendError`` if it is missing or unreadable."""
    eng = Path(engine)
    side = sidecar_path(eng)
    if not eng.is_file():
        raise BackendError(f"engine {eng} not found; build it with `rtseg-export --format engine`")
    if not side.is_file():
        raise BackendError(f"engine {eng.name} has no sidecar {side.name}, so rtseg cannot check it was built "
                           "for this TensorRT and GPU; rebuild it with `rtseg-export --format engine`")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackendError(f"sidecar {side} is unreadable ({exc}); delete both files and rebuild") from None
    if not isinstance(data, dict) or data.get("schema") != SIDECAR_SCHEMA:
        raise BackendError(f"sidecar {side} has an unknown format; delete both files and rebuild")
    return data


def mismatches(sidecar: dict[str, Any], platform: Platform) -> list[str]:
    """What differs between where an engine was built and where it is loaded (empty: compatible).

    TensorRT version (major.minor) and compute capability must match; a
    different GPU model of the same architecture, or another driver, is fine.
    """
    built = sidecar.get("platform", {})
    out = []
    b_trt = ".".join(str(built.get("trt_version", "?")).split(".")[:2])
    if b_trt != platform.trt_short:
        out.append(f"TensorRT {built.get('trt_version')} (here {platform.trt_version})")
    if str(built.get("compute_capability")) != platform.compute_capability:
        out.append(f"GPU compute capability {built.get('compute_capability')} "
                   f"[{built.get('gpu_name')}] (here {platform.compute_capability} [{platform.gpu_name}])")
    return out


def check_compatible(engine: str | os.PathLike[str], platform: Platform) -> dict[str, Any]:
    """Read and check the sidecar before deserialising; return it, or raise ``BackendError`` saying what differs."""
    data = read_sidecar(engine)
    diff = mismatches(data, platform)
    if diff:
        rebuild = data.get("rebuild") or "rtseg-export --format engine ..."
        raise BackendError(f"engine {Path(engine).name} was built for " + "; ".join(diff) +
                           f": rebuild it here with `{rebuild}` (or add --rebuild-on-mismatch)")
    return data
