"""TensorRT engine cache: file names, the JSON sidecar, compatibility checks, atomic publication.

An engine (``.engine``, TensorRT's serialized plan) is valid only for the exact
TensorRT version and GPU architecture it was built on, and only for the ONNX,
precision and shape profile it was built from. All of that goes into

- the file name: ``{model}_{H}x{W}_b{min}-{opt}-{max}_{precision}_trt{ver}_sm{cc}_{onnx8}_{key8}.engine``
  (readable, so ``ls engines/`` tells what is there),
- a cache key (sha256 over the same fields plus build options), and
- a JSON sidecar beside the engine (never inside the plan: the plan is opaque
  and TensorRT refuses foreign bytes) with the model metadata, build options,
  platform and the equivalent ``trtexec`` command.

Reading a sidecar and checking it against the running TensorRT and GPU is
what a backend needs to load an engine, so it lives in
``rtseg.runtime.engine_file`` (re-exported here); this module adds what only
the builder needs: names, keys, the sidecar document and atomic publication.

No TensorRT import here: this module is plain data and files, tested on CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rtseg.core.atomic import atomic_path
from rtseg.core.errors import UserInputError
from rtseg.core.hashing import file_sha256
from rtseg.core.meta import ModelMeta
from rtseg.core.precision import Precision

# The cache's file layer, re-exported for the builder ("X as X": an explicit re-export).
from rtseg.runtime.engine_file import ENGINE_SUFFIX as ENGINE_SUFFIX
from rtseg.runtime.engine_file import SIDECAR_SCHEMA as SIDECAR_SCHEMA
from rtseg.runtime.engine_file import SIDECAR_SUFFIX as SIDECAR_SUFFIX
from rtseg.runtime.engine_file import Platform as Platform
from rtseg.runtime.engine_file import check_compatible as check_compatible
from rtseg.runtime.engine_file import mismatches as mismatches
from rtseg.runtime.engine_file import read_sidecar as read_sidecar
from rtseg.runtime.engine_file import sidecar_path as sidecar_path

#: Precisions an engine can be built at (TensorRT spells them fp32/fp16/int8; ``Precision`` parses both).
PRECISIONS = (Precision.F32, Precision.FP16, Precision.INT8)


@dataclass(frozen=True)
class BuildRequest:
    """Everything that decides which engine comes out (and so its cache key)."""

    onnx_sha256: str
    model: str
    precision: Precision  # any spelling is parsed (fp32 or f32...)
    input_size: tuple[int, int]  # (H, W)
    batch_range: tuple[int, int, int]  # (min, opt, max)
    workspace_gb: float | None = None
    calib_fingerprint: str | None = None  # INT8 only: what the calibration frames were
    options: dict[str, Any] = field(default_factory=dict)  # other builder options, recorded

    def __post_init__(self) -> None:
        precision = Precision.parse(self.precision)
        if precision not in PRECISIONS:
            raise UserInputError(f"a TensorRT engine is built at {', '.join(map(str, PRECISIONS))}, "
                                 f"not {precision}")
        object.__setattr__(self, "precision", precision)  # frozen: normalise the spelling once
        lo, opt, hi = self.batch_range
        if not (1 <= lo <= opt <= hi):
            raise UserInputError(f"--batch-range must satisfy 1 <= MIN <= OPT <= MAX, got {lo}:{opt}:{hi}")


@dataclass(frozen=True)
class EnginePaths:
    """Where an engine and its sidecar live, and whether they were just built."""

    engine: Path
    sidecar: Path
    key: str
    built: bool = False  # False: reused from the cache


def parse_batch_range(text: str | None, batch: int | None = None) -> tuple[int, int, int]:
    """``MIN:OPT:MAX`` (or one number N = N:N:N) into a tuple; ``batch`` when no range is given."""
    if text is None:
        b = batch or 1
        return parse_batch_range(str(b))
    parts = text.split(":")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise UserInputError(f"bad --batch-range {text!r}: write MIN:OPT:MAX, e.g. 1:4:8") from None
    if len(nums) == 1:
        nums = nums * 3
    if len(nums) != 3:
        raise UserInputError(f"bad --batch-range {text!r}: write MIN:OPT:MAX, e.g. 1:4:8")
    lo, opt, hi = nums
    if not (1 <= lo <= opt <= hi):
        raise UserInputError(f"--batch-range must satisfy 1 <= MIN <= OPT <= MAX, got {text}")
    return lo, opt, hi


def calib_fingerprint(source: str | os.PathLike[str], max_frames: int, method: str) -> str:
    """Short id of an INT8 calibration set: file names and sizes (content hash for a single video)."""
    src = Path(source)
    h = hashlib.sha256(f"{max_frames}|{method}".encode())
    if src.is_dir():
        for p in sorted(src.iterdir()):
            if p.is_file():
                h.update(f"{p.name}|{p.stat().st_size}".encode())
    elif src.is_file():
        h.update(file_sha256(src).encode())
    else:
        raise UserInputError(f"calibration source {src} does not exist; pass a video file or a folder of images")
    return h.hexdigest()[:16]


def cache_key(req: BuildRequest, platform: Platform) -> str:
    """sha256 (hex) over everything that makes an engine valid."""
    fields = {
        "onnx": req.onnx_sha256, "precision": req.precision, "input": list(req.input_size),
        "batch": list(req.batch_range), "workspace_gb": req.workspace_gb, "calib": req.calib_fingerprint,
        "options": req.options, "trt": platform.trt_version, "sm": platform.compute_capability,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def engine_paths(out_dir: str | os.PathLike[str], req: BuildRequest, platform: Platform) -> EnginePaths:
    """The engine and sidecar paths for this request on this platform."""
    key = cache_key(req, platform)
    h, w = req.input_size
    lo, opt, hi = req.batch_range
    safe_model = "".join(c if c.isalnum() or c in "-_." else "-" for c in req.model)
    stem = (f"{safe_model}_{h}x{w}_b{lo}-{opt}-{hi}_{req.precision}_trt{platform.trt_short}"
            f"_sm{platform.sm}_{req.onnx_sha256[:8]}_{key[:8]}")
    d = Path(out_dir)
    return EnginePaths(d / (stem + ENGINE_SUFFIX), d / (stem + SIDECAR_SUFFIX), key)


def trtexec_command(onnx_for_build: str | os.PathLike[str], engine: str | os.PathLike[str], req: BuildRequest,
                    *, input_name: str = "frames", timing_cache: str | os.PathLike[str] | None = None) -> str:
    """The equivalent ``trtexec`` command line (for users who want to reproduce a build by hand).

    The ONNX named here is the one TensorRT parsed: for fp16/int8 that is the
    mixed-precision / Q/DQ file, which is why no ``--fp16``/``--int8`` flag
    appears: the precision is in the graph and the network is strongly typed.
    """
    h, w = req.input_size
    lo, opt, hi = req.batch_range
    args = ["trtexec", f"--onnx={onnx_for_build}", f"--saveEngine={engine}", "--stronglyTyped",
            f"--minShapes={input_name}:{lo}x{h}x{w}x3", f"--optShapes={input_name}:{opt}x{h}x{w}x3",
            f"--maxShapes={input_name}:{hi}x{h}x{w}x3"]
    if req.workspace_gb:
        args.append(f"--memPoolSize=workspace:{int(req.workspace_gb * 1024)}M")
    if timing_cache:
        args.append(f"--timingCacheFile={timing_cache}")
    return shlex.join(args)


def make_sidecar(req: BuildRequest, platform: Platform, meta: ModelMeta, *, engine: Path, key: str,
                 build_seconds: float, trtexec: str, rebuild: str, io: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The sidecar document (see the module docstring)."""
    return {
        "schema": SIDECAR_SCHEMA,
        "engine": engine.name,
        "key": key,
        "model": meta.model,
        "meta": meta.to_dict(),  # classes, palette, mean/std, channel order, weights...
        "input": {"name": "frames", "dtype": "uint8", "layout": "NHWC", "channels": "BGR",
                  "size": list(req.input_size), "batch_range": list(req.batch_range)},
        "output": {"name": "labels", "dtype": "uint8"},
        "io": list(io),
        "precision": req.precision,
        "onnx_sha256": req.onnx_sha256,
        "build_options": {"workspace_gb": req.workspace_gb, "calib_fingerprint": req.calib_fingerprint,
                          "strongly_typed": True, **req.options},
        "platform": asdict(platform),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(build_seconds, 3),
        "trtexec": trtexec,
        "rebuild": rebuild,
    }


def find_cached(paths: EnginePaths) -> bool:
    """True when both files exist and the sidecar names this exact key (a half-written pair does not count)."""
    if not (paths.engine.is_file() and paths.sidecar.is_file()):
        return False
    try:
        data = json.loads(paths.sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("key") == paths.key


@contextlib.contextmanager
def publish_pair(paths: EnginePaths) -> Iterator[tuple[Path, Path]]:
    """Yield temporary (engine, sidecar) paths; publish both only if the block completes.

    An exception or Ctrl-C inside the block leaves neither file (nor a
    temporary). The sidecar is renamed first and the engine last: a reader
    that finds an engine therefore always finds its sidecar, and if the engine
    rename itself fails the sidecar is removed again.
    """
    with atomic_path(paths.engine) as tmp_engine, atomic_path(paths.sidecar) as tmp_side:
        # On normal exit the inner atomic_path (sidecar) renames first, then the
        # outer one (engine); ``publish`` removes the sidecar if the engine's fails.
        yield tmp_engine, tmp_side


def publish(paths: EnginePaths, plan: bytes, sidecar: dict[str, Any]) -> None:
    """Write ``plan`` and ``sidecar`` to their final names atomically (see ``publish_pair``)."""
    try:
        with publish_pair(paths) as (tmp_engine, tmp_side):
            tmp_engine.write_bytes(plan)
            tmp_side.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except BaseException:
        # The sidecar may have been renamed before the engine's rename failed.
        if not paths.engine.exists():
            with contextlib.suppress(FileNotFoundError):
                paths.sidecar.unlink()
        raise


def remove_pair(paths: EnginePaths | Path) -> None:
    """Delete an engine and its sidecar (used by --rebuild-on-mismatch)."""
    eng = paths.engine if isinstance(paths, EnginePaths) else Path(paths)
    for p in (eng, sidecar_path(eng)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
