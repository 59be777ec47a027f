"""Build a TensorRT engine from an rtseg deploy-graph ONNX, in small file-in/file-out steps.

    build_engine(onnx, precision=..., batch_range=..., out_dir="engines")
      1. platform      which TensorRT and GPU we build for (fails fast without them)
      2. plan          cache key, engine + sidecar names; reuse a valid cached pair
      3. prepare       ONNX for the precision: FP32 as is, FP16 mixed (precision.py),
                       INT8 explicit Q/DQ calibrated on the user's frames (quantize.py),
                       INT8 also checked on CPU against the mIoU budget before building
      4. build         parse into a strongly typed network, one optimization profile
                       over the batch range, workspace cap, timing cache, progress
      5. publish       engine + JSON sidecar renamed into place together

The engine's I/O is the deploy graph's: ``frames`` uint8 ``[N,H,W,3]`` BGR in,
``labels`` uint8 ``[N,H,W]`` out. TensorRT takes UINT8 network inputs/outputs
when they are converted to/from FP32/FP16 right at the boundary, which is what
the graph's first Cast and final ArgMax->Cast are.

Threading: all of this runs in the calling thread; TensorRT calls the progress
monitor from its builder threads (see ``trt_compat.attach_progress``).
Version differences between TensorRT 10 and 11 live in ``trt_compat`` only.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rtseg.core.atomic import atomic_write_bytes
from rtseg.core.errors import BackendError, ExportError, UserInputError
from rtseg.core.hashing import file_sha256
from rtseg.core.meta import ONNX_META_KEY, ModelMeta
from rtseg.core.precision import Precision
from rtseg.export import engine_cache as ec
from rtseg.runtime import trt_compat as tc

DEFAULT_OUT_DIR = Path("engines")


@dataclass(frozen=True)
class OnnxInfo:
    """What the builder needs to know about the source ONNX (read without TensorRT)."""

    path: Path
    sha256: str
    meta: ModelMeta
    input_name: str
    input_size: tuple[int, int]  # H, W
    batch: int  # the batch the ONNX was exported with (first dim), 0 if dynamic
    precision: Precision  # rtseg.precision of the file: must be f32 to build from


def read_onnx_info(onnx_path: str | os.PathLike[str]) -> OnnxInfo:
    """Metadata, hash and input shape of a deploy-graph ONNX; ``UserInputError`` if it is not one."""
    import onnx

    p = Path(onnx_path)
    if not p.is_file():
        raise UserInputError(f"ONNX file {p} not found; export it first with `rtseg-export --format onnx`")
    model = onnx.load(str(p), load_external_data=False)
    props = {m.key: m.value for m in model.metadata_props}
    if ONNX_META_KEY not in props:
        raise UserInputError(f"{p.name} has no rtseg metadata ({ONNX_META_KEY}); export it with rtseg-export")
    meta = ModelMeta.from_json(props[ONNX_META_KEY])
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UserInputError(f"{p.name} has {len(inputs)} inputs; an rtseg deploy graph has one (frames)")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value for d in dims]
    if len(shape) != 4 or shape[3] != 3 or shape[1] <= 0 or shape[2] <= 0:
        raise UserInputError(f"{p.name} input is not [N,H,W,3] frames; export it with rtseg-export")
    return OnnxInfo(p, file_sha256(p), meta, inputs[0].name, (shape[1], shape[2]), shape[0],
                    Precision.parse(props.get("rtseg.precision", "f32")))


detect_platform = tc.detect_platform


def make_request(info: OnnxInfo, *, precision: str | Precision, batch_range: tuple[int, int, int],
                 workspace_gb: float | None, calib_source: str | os.PathLike[str] | None,
                 calib_frames: int, calib_method: str) -> ec.BuildRequest:
    """The cache-relevant description of a build (no TensorRT needed)."""
    precision = Precision.parse(precision)
    if info.precision is not Precision.F32:
        raise UserInputError(f"{info.path.name} is already a {info.precision} graph; build from the FP32 export "
                             "and pass --precision instead")
    if info.batch and (batch_range[0] != info.batch or batch_range[2] != info.batch):
        raise UserInputError(
            f"{info.path.name} was exported for batch {info.batch}; export with --batch matching --batch-range "
            f"{':'.join(map(str, batch_range))} (or export a dynamic-batch ONNX)")
    fingerprint = None
    if precision is Precision.INT8:
        if calib_source is None:
            raise UserInputError("--precision int8 needs --calib-source VIDEO_OR_FOLDER with footage like what "
                                 "the model will see")
        fingerprint = ec.calib_fingerprint(calib_source, calib_frames, calib_method)
    if workspace_gb is not None and workspace_gb <= 0:
        raise UserInputError(f"--workspace must be a positive number of GB, got {workspace_gb}")
    return ec.BuildRequest(onnx_sha256=info.sha256, model=info.meta.model, precision=precision,
                           input_size=info.input_size, batch_range=batch_range, workspace_gb=workspace_gb,
                           calib_fingerprint=fingerprint,
                           options={"calib_frames": calib_frames if precision is Precision.INT8 else None,
                                    "calib_method": calib_method if precision is Precision.INT8 else None})


@contextlib.contextmanager
def _scratch_dir(out_dir: Path) -> Iterator[Path]:
    """A hidden temporary folder beside the engines for intermediate ONNX files; always removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".rtseg-build-", dir=out_dir) as d:
        yield Path(d)


def prepare_onnx(info: OnnxInfo, req: ec.BuildRequest, scratch: Path, *,
                 calib_source: str | os.PathLike[str] | None = None, int8_budget: float = 1.0,
                 progress: tc.Progress | None = None) -> Path:
    """Step 3: the ONNX TensorRT will parse, with the requested precision decided in the graph.

    INT8: the Q/DQ graph is run by ONNX Runtime's INT8 kernels on CPU and
    compared with the FP32 graph on frames from ``calib_source`` not used for
    calibration; over ``int8_budget`` mIoU points it is rejected here, before a
    long TensorRT build.
    """
    if progress:
        progress(f"prepare {req.precision} ONNX", 0, 1)
    if req.precision is Precision.F32:
        out = info.path
    elif req.precision is Precision.FP16:
        from rtseg.export.precision import convert_to_mixed_fp16

        out = convert_to_mixed_fp16(info.path, scratch / "mixed_fp16.onnx").path
    else:
        import numpy as np

        from rtseg.eval.parity import check_int8_budget, compare_backends
        from rtseg.export.quantize import quantize_int8
        from rtseg.pipeline.sampling import read_frames
        from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend

        assert calib_source is not None  # make_request guarantees it
        n = int(req.options.get("calib_frames") or 64)
        frames = read_frames(calib_source, req.input_size, n + max(4, n // 4))
        # Every fifth frame is held out of calibration and used for the budget check.
        idx = np.arange(len(frames))
        calib, held_out = frames[idx % 5 != 4][:n], frames[idx % 5 == 4]
        if len(held_out) == 0:  # a source of < 5 frames: check on the calibration frames
            held_out = frames
        out = quantize_int8(info.path, scratch / "int8_qdq.onnx", calib_frames=np.ascontiguousarray(calib),
                            method=str(req.options.get("calib_method") or "minmax"), progress=progress).path
        b = max(1, info.batch)
        batches = [held_out[i:i + b] for i in range(0, len(held_out) - b + 1, b)]
        with OnnxRuntimeBackend(info.path) as reference, OnnxRuntimeBackend(out) as candidate:
            report = compare_backends(reference, candidate, batches, info.meta.class_names,
                                      candidate_name="int8 (ONNX Runtime CPU)")
        print(report.summary(), file=sys.stderr)
        check_int8_budget(report, budget_points=int8_budget)
    out = trt_boundary_casts(out, scratch / f"{req.precision}_trt_io.onnx")
    if progress:
        progress(f"prepare {req.precision} ONNX", 1, 1)
    return out


def trt_boundary_casts(onnx_in: Path, onnx_out: Path) -> Path:
    """Rewrite the uint8 graph boundaries into the forms TensorRT documents for UINT8 I/O.

    TensorRT allows a UINT8 network tensor only as an input converted to
    FP32/FP16 or as an output converted from FP32/FP16 (``DataType.UINT8``), so:

    - ``frames(uint8) -> Transpose -> Cast(float)`` becomes
      ``frames(uint8) -> Cast(float) -> Transpose`` (the same values: a
      transpose commutes with an element-wise cast);
    - ``ArgMax(int64) -> Cast(uint8) -> labels`` becomes
      ``ArgMax -> Cast(float) -> Cast(uint8)`` (class indices < 256 are exact
      in FP32, and float->uint8 truncation is exact on integers).

    Returns ``onnx_in`` unchanged when there is nothing to rewrite, else ``onnx_out``.
    """
    import onnx
    from onnx import TensorProto, helper

    from rtseg.core.atomic import atomic_path

    model = onnx.load(str(onnx_in))
    g = model.graph
    nodes = list(g.node)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for n in nodes:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
        for x in n.output:
            producer[x] = n
    u8_inputs = {i.name for i in g.input if i.type.tensor_type.elem_type == TensorProto.UINT8}
    u8_outputs = {o.name for o in g.output if o.type.tensor_type.elem_type == TensorProto.UINT8}

    def cast_to(node: onnx.NodeProto) -> int:
        return int(next(a.i for a in node.attribute if a.name == "to"))

    first: dict[int, onnx.NodeProto] = {}  # id(node) -> node to emit just before it
    moved: set[int] = set()  # casts now emitted before their transpose
    for n in nodes:
        if n.op_type == "Transpose" and n.input[0] in u8_inputs:
            users = consumers.get(n.output[0], [])
            if len(users) == 1 and users[0].op_type == "Cast" and \
                    cast_to(users[0]) in (TensorProto.FLOAT, TensorProto.FLOAT16):
                cast = users[0]
                # Cast reads the graph input; Transpose reads the cast and writes the cast's old output.
                src, mid, dst = n.input[0], n.output[0], cast.output[0]
                cast.input[0], cast.output[0] = src, mid
                n.input[0], n.output[0] = mid, dst
                first[id(n)] = cast
                moved.add(id(cast))
        elif n.op_type == "Cast" and n.output[0] in u8_outputs and cast_to(n) == TensorProto.UINT8:
            prod = producer.get(n.input[0])
            if prod is not None and prod.op_type in ("ArgMax", "ArgMin"):
                mid = n.input[0] + "__f32"
                first[id(n)] = helper.make_node("Cast", [n.input[0]], [mid], to=TensorProto.FLOAT,
                                                name=(n.name or "labels_cast") + "_via_f32")
                n.input[0] = mid
    changed = bool(first)
    ordered: list[onnx.NodeProto] = []
    for n in nodes:
        if id(n) in moved:
            continue
        if id(n) in first:
            ordered.append(first[id(n)])
        ordered.append(n)
    copies = []
    for n in ordered:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        copies.append(c)
    del g.node[:]
    g.node.extend(copies)
    if not changed:
        return onnx_in
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    with atomic_path(onnx_out) as tmp:
        onnx.save(model, str(tmp))
    return onnx_out


def build_plan(onnx_for_build: Path, req: ec.BuildRequest, input_name: str, *,
               timing_cache: Path | None = None, progress: tc.Progress | None = None,
               verbose: bool = False) -> tuple[bytes, list[dict[str, object]]]:
    """Step 4: parse + build with TensorRT; returns the serialized plan and its I/O description."""
    import tensorrt as trt

    tc.import_tensorrt()
    logger = tc.make_logger(verbose)
    builder = trt.Builder(logger)
    network = tc.create_network(builder)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_for_build)):
        raise ExportError(f"TensorRT's ONNX parser rejected the graph: {tc.parser_errors(parser)}")
    config = builder.create_builder_config()
    tc.set_workspace(config, req.workspace_gb)
    h, w = req.input_size
    lo, opt, hi = req.batch_range
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    frames = next((t for t in inputs if t.name == input_name), None)
    if frames is None:
        raise ExportError(f"the parsed network has no input {input_name!r}; rebuild from an rtseg ONNX export")
    dims = [int(frames.shape[i]) for i in range(len(frames.shape))]
    if any(d < 0 for d in dims):
        # Dynamic batch: one optimization profile spanning --batch-range.
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, trt.Dims([lo, h, w, 3]), trt.Dims([opt, h, w, 3]), trt.Dims([hi, h, w, 3]))
        config.add_optimization_profile(profile)
    elif dims != [lo, h, w, 3] or lo != hi:
        raise ExportError(f"the ONNX input is fixed at {dims}, which does not match batch range {lo}:{opt}:{hi}; "
                          "export with a matching --batch (or a dynamic batch)")
    if timing_cache is not None:
        tc.load_timing_cache(config, timing_cache.read_bytes() if timing_cache.is_file() else b"")
    monitor = tc.attach_progress(config, progress)
    plan = tc.build_serialized(builder, network, config)
    err = getattr(monitor, "error", None)
    if isinstance(err, BaseException):
        raise err  # the progress callback asked to cancel (e.g. Ctrl-C)
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, tc.serialize_timing_cache(config))
    runtime = trt.Runtime(logger)
    engine = tc.deserialize(runtime, plan)
    return plan, tc.io_tensors(engine)


def build_engine(
    onnx_path: str | os.PathLike[str],
    *,
    precision: str = "fp16",
    batch_range: tuple[int, int, int] | None = None,
    workspace_gb: float | None = None,
    timing_cache: str | os.PathLike[str] | None = None,
    calib_source: str | os.PathLike[str] | None = None,
    calib_frames: int = 64,
    calib_method: str = "minmax",
    int8_budget: float = 1.0,
    out_dir: str | os.PathLike[str] = DEFAULT_OUT_DIR,
    rebuild_on_mismatch: bool = False,
    force: bool = False,
    progress: tc.Progress | None = None,
    verbose: bool = False,
    command: str | None = None,
    verify_source: str | os.PathLike[str] | None = None,
) -> ec.EnginePaths:
    """Build (or reuse) the TensorRT engine for an rtseg FP32 deploy-graph ONNX.

    Returns the engine and sidecar paths (``built`` False when the cached pair
    was reused). ``rebuild_on_mismatch``: an engine of the same request built
    for another TensorRT/GPU is deleted and rebuilt instead of refused. An
    interrupted build (exception or Ctrl-C) leaves no engine, sidecar or
    intermediate file behind. ``command``: the command line that asked for
    this build, stored in the sidecar as the way to rebuild it.
    ``verify_source`` (video or folder): after building, run the engine on
    its frames against the FP32 ONNX in ONNX Runtime and delete the engine
    again if it fails the precision's acceptance rule (``verify_engine``).
    """
    info = read_onnx_info(onnx_path)
    if batch_range is None:
        b = max(1, info.batch)
        batch_range = (b, b, b)
    platform = detect_platform()
    req = make_request(info, precision=precision, batch_range=batch_range, workspace_gb=workspace_gb,
                       calib_source=calib_source, calib_frames=calib_frames, calib_method=calib_method)
    out = Path(out_dir)
    paths = ec.engine_paths(out, req, platform)
    if not force and ec.find_cached(paths):
        return paths
    stale = stale_engines(out, paths, req.onnx_sha256)
    if stale and not rebuild_on_mismatch and not force:
        side = ec.read_sidecar(stale[0])
        diff = ec.mismatches(side, platform) or ["other build options"]
        raise BackendError(f"{stale[0].name} exists for this model but was built for " + "; ".join(diff) +
                           ": pass --rebuild-on-mismatch to replace it")
    for s in stale:
        ec.remove_pair(s)
    built = run_build(info, req, platform, paths, calib_source=calib_source, int8_budget=int8_budget,
                      timing_cache=Path(timing_cache) if timing_cache else None, progress=progress,
                      verbose=verbose, command=command)
    if verify_source is not None:
        verify_engine(built, info.path, verify_source, int8_budget=int8_budget)
    return built


def verify_engine(paths: ec.EnginePaths, fp32_onnx: Path, source: str | os.PathLike[str], *,
                  int8_budget: float = 1.0, max_frames: int = 30) -> object:
    """Run a freshly built engine against the FP32 ONNX (ONNX Runtime, CPU) on ``source`` frames.

    fp16 must agree on >= 99.5% of pixels, int8 must stay within ``int8_budget``
    mIoU points, nothing may be NaN/Inf. A failing engine and its sidecar are
    deleted and ``ExportError`` says why. Returns the ``ParityReport``.
    """
    from rtseg.benchmark.parity import parity_on_source
    from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from rtseg.runtime.tensorrt_backend import TensorRTBackend

    be = TensorRTBackend(paths.engine)
    precision = be.info().precision
    with be:
        n = be.input_shape[0]
        try:
            with OnnxRuntimeBackend(fp32_onnx) as reference:
                if reference.input_shape[0] != n:
                    raise ExportError(f"{fp32_onnx.name} takes batch {reference.input_shape[0]}, the engine "
                                      f"{n}; verify against an ONNX of the same batch")
                report = parity_on_source(reference, be, source, max_frames=max_frames, precision=precision,
                                          int8_budget=int8_budget, candidate_name=f"TensorRT {precision}")
        except ExportError:
            be.deactivate()
            ec.remove_pair(paths)
            raise
    print(report.summary(), file=sys.stderr)
    return report


def run_build(info: OnnxInfo, req: ec.BuildRequest, platform: ec.Platform, paths: ec.EnginePaths, *,
              calib_source: str | os.PathLike[str] | None = None, int8_budget: float = 1.0,
              timing_cache: Path | None = None, progress: tc.Progress | None = None, verbose: bool = False,
              command: str | None = None) -> ec.EnginePaths:
    """Steps 3-5 for a planned build. Everything intermediate lives in a scratch folder that is
    removed on any exit, and the engine/sidecar pair is published only at the very end."""
    out = paths.engine.parent
    t0 = time.perf_counter()
    with _scratch_dir(out) as scratch:
        onnx_for_build = prepare_onnx(info, req, scratch, calib_source=calib_source, int8_budget=int8_budget,
                                      progress=progress)
        plan, io = build_plan(onnx_for_build, req, info.input_name, timing_cache=timing_cache, progress=progress,
                              verbose=verbose)
        seconds = time.perf_counter() - t0
        sidecar = ec.make_sidecar(
            req, platform, info.meta, engine=paths.engine, key=paths.key, build_seconds=seconds,
            trtexec=ec.trtexec_command(
                info.path if req.precision is Precision.F32 else f"<{req.precision} ONNX written by rtseg>",
                paths.engine, req, input_name=info.input_name, timing_cache=timing_cache),
            rebuild=command or rebuild_command(info.path, req, out, calib_source), io=io)
        ec.publish(paths, plan, sidecar)
    return ec.EnginePaths(paths.engine, paths.sidecar, paths.key, built=True)


class ConsoleProgress:
    """A ``progress`` callback for the CLI: one updating line per phase on stderr.

    TensorRT calls it from its builder threads; it only writes to stderr.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self._last = ""

    def __call__(self, phase: str, step: int, steps: int) -> None:
        pct = f" {100 * step // steps:3d}%" if steps else ""
        line = f"{phase}:{pct} ({step}/{steps})" if steps else phase
        if line != self._last:
            end = "\n" if steps and step >= steps else "\r"
            print(line, end=end, file=self.stream, flush=True)
            self._last = line


def stale_engines(out_dir: Path, paths: ec.EnginePaths, onnx_sha256: str) -> list[Path]:
    """Engines in ``out_dir`` built from the same ONNX (same checkpoint, size, batch range and
    precision) but with another key: made for another TensorRT/GPU or other build options.

    An engine of another checkpoint with the same model name, size, batch and precision is
    *not* stale: both stay (the names differ in their ONNX hash), so building one never evicts
    the other. A pair whose sidecar cannot be read is judged by its name.
    """
    prefix = paths.engine.name.split("_trt")[0] + "_trt"
    stale = []
    for p in sorted(out_dir.glob(f"{prefix}*{ec.ENGINE_SUFFIX}")):
        if p == paths.engine:
            continue
        try:
            built_from = str(ec.read_sidecar(p).get("onnx_sha256", ""))
        except BackendError:
            built_from = ""
        same_onnx = built_from == onnx_sha256 if built_from else f"_{onnx_sha256[:8]}_" in p.name
        if same_onnx:
            stale.append(p)
    return stale


def rebuild_command(onnx: Path, req: ec.BuildRequest, out_dir: Path, calib: str | os.PathLike[str] | None) -> str:
    """The rtseg-export command that rebuilds this engine (shown in mismatch messages)."""
    lo, opt, hi = req.batch_range
    args = ["rtseg-export", "--onnx", str(onnx), "--format", "engine", "--precision", req.precision,
            "--batch-range", f"{lo}:{opt}:{hi}", "--out-dir", str(out_dir)]
    if req.workspace_gb:
        args += ["--workspace", f"{req.workspace_gb:g}"]
    if calib is not None:
        args += ["--calib-source", str(calib)]
    return shlex.join(args)
