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

Loading reads the sidecar first and compares it with the running TensorRT and
GPU *before* deserialising, so a mismatch is a one-line message saying what
differs and how to rebuild instead of a TensorRT crash.

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
from rtseg.core.errors import BackendError, UserInputError
from rtseg.core.hashing import file_sha256
from rtseg.core.meta import ModelMeta

SIDECAR_SCHEMA = 1
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
PRECISIONS = ("fp32", "fp16", "int8")


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


@dataclass(frozen=True)
class BuildRequest:
    """Everything that decides which engine comes out (and so its cache key)."""

    onnx_sha256: str
    model: str
    precision: str
    input_size: tuple[int, int]  # (H, W)
    batch_range: tuple[int, int, int]  # (min, opt, max)
    workspace_gb: float | None = None
    calib_fingerprint: str | None = None  # INT8 only: what the calibration frames were
    options: dict[str, Any] = field(default_factory=dict)  # other builder options, recorded

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserInputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
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


def sidecar_path(engine: str | os.PathLike[str]) -> Path:
    return Path(engine).with_suffix(SIDECAR_SUFFIX)


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
