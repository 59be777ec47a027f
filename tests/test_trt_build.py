"""TensorRT build orchestration and the GPU backends.

On a machine without TensorRT/CUDA (CI, this project's dev machines) the CPU
parts run for real: reading the ONNX, planning, the FP16/INT8 preparation,
Ctrl-C cleanup, and the actionable errors. The parts that need TensorRT or a
GPU are marked ``trt``/``gpu`` and skip here; they have not been run yet.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from precision_helpers import export, street_frames, tiny_model

from rtseg.core.errors import BackendError, UserInputError
from rtseg.core.hashing import file_sha256
from rtseg.export import engine_cache as ec
from rtseg.export import tensorrt_build as tb
from rtseg.runtime import trt_compat as tc

SIZE = (64, 96)
HAS_TRT = tc.tensorrt_available()


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


skip_no_trt = pytest.mark.skipif(not (HAS_TRT and _has_cuda()), reason="needs TensorRT and a CUDA GPU")
skip_no_gpu = pytest.mark.skipif(not _has_cuda(), reason="no CUDA GPU")

#: A target described by hand, for the CPU steps of a build (nothing here claims it ran on it).
TARGET = ec.Platform("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(tiny_model(), tmp_path_factory.mktemp("build") / "tiny.onnx", SIZE)


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("calib")
    for i, f in enumerate(street_frames(10, SIZE)):
        cv2.imwrite(str(d / f"{i:02d}.png"), f)
    return d


def test_read_onnx_info(tiny_onnx: Path, tmp_path: Path) -> None:
    info = tb.read_onnx_info(tiny_onnx)
    assert info.input_size == SIZE and info.batch == 1 and info.input_name == "frames"
    assert info.meta.model == "tiny" and info.meta.num_classes == 11 and info.precision == "f32"
    assert info.sha256 == file_sha256(tiny_onnx)
    import onnx

    bare = onnx.load(str(tiny_onnx))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(UserInputError, match="no rtseg metadata"):
        tb.read_onnx_info(tmp_path / "bare.onnx")
    with pytest.raises(UserInputError, match="not found"):
        tb.read_onnx_info(tmp_path / "missing.onnx")


def test_make_request_refuses_what_cannot_build(tiny_onnx: Path, tmp_path: Path, calib_dir: Path) -> None:
    info = tb.read_onnx_info(tiny_onnx)
    kw = dict(workspace_gb=None, calib_source=None, calib_frames=8, calib_method="minmax")
    with pytest.raises(UserInputError, match="--calib-source"):
        tb.make_request(info, precision="int8", batch_range=(1, 1, 1), **kw)
    with pytest.raises(UserInputError, match="exported for batch 1"):
        tb.make_request(info, precision="fp16", batch_range=(1, 2, 4), **kw)
    with pytest.raises(UserInputError, match="--workspace"):
        tb.make_request(info, precision="fp16", batch_range=(1, 1, 1), **{**kw, "workspace_gb": 0})
    from rtseg.export.precision import convert_to_mixed_fp16

    convert_to_mixed_fp16(tiny_onnx, tmp_path / "f16.onnx")
    with pytest.raises(UserInputError, match="already a fp16 graph"):
        tb.make_request(tb.read_onnx_info(tmp_path / "f16.onnx"), precision="fp16", batch_range=(1, 1, 1), **kw)
    req = tb.make_request(info, precision="int8", batch_range=(1, 1, 1), **{**kw, "calib_source": calib_dir})
    assert req.calib_fingerprint and req.options["calib_frames"] == 8


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is absent")
def test_without_tensorrt_the_error_says_how_to_install(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"TensorRT is not installed .*pip install tensorrt-cu12"):
        tb.build_engine(tiny_onnx, precision="fp16", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_backends_import_without_tensorrt_or_cuda() -> None:
    code = ("import sys, rtseg.runtime.tensorrt_backend, rtseg.runtime.torch_cuda_backend, "
            "rtseg.export.tensorrt_build, rtseg.runtime.trt_compat; "
            "assert 'tensorrt' not in sys.modules, 'imported tensorrt eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(HAS_TRT and _has_cuda(), reason="checks the errors shown without TensorRT/CUDA")
def test_backends_fail_on_use_with_actionable_errors(tmp_path: Path) -> None:
    from rtseg.runtime.factory import create_backend

    with pytest.raises(UserInputError, match="not a TensorRT engine"):
        create_backend("trt", tmp_path / "model.onnx")
    with pytest.raises(BackendError, match="not found"):
        create_backend("trt", tmp_path / "missing.engine")
    # An engine pair whose sidecar is real and whose plan is never read: activate() must
    # stop at the missing TensorRT/CUDA before touching it.
    from precision_helpers import camvid_meta

    req = ec.BuildRequest("ab" * 32, "tiny", "fp16", SIZE, (1, 1, 1))
    paths = ec.engine_paths(tmp_path, req, TARGET)
    ec.publish(paths, b"", ec.make_sidecar(req, TARGET, camvid_meta(), engine=paths.engine, key=paths.key,
                                           build_seconds=0.0, trtexec="", rebuild="rtseg-export ..."))
    be = create_backend("trt", paths.engine)
    assert be.input_shape == (1, *SIZE) and be.meta.model == "tiny"
    with pytest.raises(BackendError, match="TensorRT is not installed|no CUDA GPU"):
        be.activate()
    with pytest.raises(BackendError, match="fp16 engine, asked int8"):
        create_backend("trt", paths.engine, precision="int8")
    cuda_be = create_backend("torch-cuda", None, model="stdc1", num_classes=11, input_size=(64, 64))
    with pytest.raises(BackendError, match="no CUDA GPU available to PyTorch"):
        cuda_be.activate()


@pytest.mark.parametrize("precision,phase", [("fp16", "prepare fp16 ONNX"), ("int8", "INT8 calibration")])
def test_ctrl_c_during_build_leaves_nothing(tiny_onnx: Path, calib_dir: Path, tmp_path: Path,
                                            precision: str, phase: str) -> None:
    """Ctrl-C in the CPU steps of a build (FP16 conversion written, INT8 calibration under way)."""
    out = tmp_path / "engines"
    info = tb.read_onnx_info(tiny_onnx)
    req = tb.make_request(info, precision=precision, batch_range=(1, 1, 1), workspace_gb=None,
                          calib_source=calib_dir if precision == "int8" else None, calib_frames=8,
                          calib_method="minmax")
    paths = ec.engine_paths(out, req, TARGET)
    seen: list[tuple[str, int, int]] = []

    def progress(name: str, step: int, steps: int) -> None:
        seen.append((name, step, steps))
        # FP16: after the mixed-precision ONNX exists in the scratch folder; INT8: mid-calibration,
        # inside ONNX Runtime's calibration loop.
        if name == phase and step == (steps if precision == "fp16" else 3):
            assert any(out.rglob("*.onnx"))  # work in progress really is on disk
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tb.run_build(info, req, TARGET, paths, calib_source=calib_dir, progress=progress)
    assert seen and list(out.iterdir()) == []  # no engine, no sidecar, no scratch folder


def test_int8_over_budget_is_rejected_before_building(tiny_onnx: Path, calib_dir: Path, tmp_path: Path) -> None:
    from rtseg.core.errors import ExportError

    info = tb.read_onnx_info(tiny_onnx)
    req = tb.make_request(info, precision="int8", batch_range=(1, 1, 1), workspace_gb=None,
                          calib_source=calib_dir, calib_frames=8, calib_method="minmax")
    with tb._scratch_dir(tmp_path) as scratch, pytest.raises(ExportError, match="INT8 rejected"):
        # Budget 0 points: any difference at all from FP32 rejects (random weights always differ).
        tb.prepare_onnx(info, req, scratch, calib_source=calib_dir, int8_budget=0.0)
    assert list(tmp_path.iterdir()) == []


# -- need TensorRT and a GPU (not run yet: no GPU in this project's sessions so far) --

@pytest.mark.trt
@pytest.mark.gpu
@skip_no_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_run_and_reuse_engine(precision: str, tiny_onnx: Path, calib_dir: Path, tmp_path: Path) -> None:
    from rtseg.eval.parity import compare_backends
    from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from rtseg.runtime.tensorrt_backend import TensorRTBackend

    calib = calib_dir if precision == "int8" else None
    paths = tb.build_engine(tiny_onnx, precision=precision, out_dir=tmp_path, calib_source=calib, calib_frames=8,
                            int8_budget=100.0, timing_cache=tmp_path / "timing.cache", verify_source=calib_dir,
                            progress=tb.ConsoleProgress())
    assert paths.built and paths.engine.is_file() and paths.sidecar.is_file()
    again = tb.build_engine(tiny_onnx, precision=precision, out_dir=tmp_path, calib_source=calib, calib_frames=8,
                            int8_budget=100.0)
    assert again.engine == paths.engine and not again.built  # reused from the cache
    with TensorRTBackend(paths.engine) as be, OnnxRuntimeBackend(tiny_onnx) as ref:
        frames = street_frames(4, SIZE)
        rep = compare_backends(ref, be, (f[None] for f in frames), be.meta.class_names,
                               candidate_name=f"trt {precision}")
        assert str(be.info().precision) == {"fp32": "f32"}.get(precision, precision)
        assert set(be.last_timings) == {"h2d", "compute", "d2h", "total"}
        assert all(v >= 0 for v in be.last_timings.values())
        # Two in flight (double buffering) give the same labels, in order, as one at a time.
        one_by_one = [be.infer(frames[i:i + 1]) for i in range(2)]
        be.submit(frames[:1])
        be.submit(frames[1:2])
        assert np.array_equal(be.collect(), one_by_one[0]) and np.array_equal(be.collect(), one_by_one[1])
    if precision != "int8":
        assert rep.pixel_agreement >= 0.995, rep.summary()


@pytest.mark.gpu
@skip_no_gpu
def test_torch_cuda_backend_matches_cpu() -> None:
    from rtseg.runtime.factory import create_backend

    frames = street_frames(2, (64, 64))
    with create_backend("torch", None, model="stdc1", num_classes=11, input_size=(64, 64)) as cpu:
        ref = [cpu.infer(f[None]) for f in frames]
    for graph in (False, True):
        with create_backend("torch-cuda", None, model="stdc1", num_classes=11, input_size=(64, 64),
                            precision="fp16", cuda_graph=graph) as gpu:
            got = [gpu.infer(f[None]) for f in frames]
            assert set(gpu.last_timings) == {"h2d", "compute", "d2h", "total"}
        agree = np.mean([np.mean(a == b) for a, b in zip(ref, got, strict=True)])
        assert agree >= 0.99


def test_uint8_boundaries_rewritten_for_tensorrt(tiny_onnx: Path, tmp_path: Path) -> None:
    """frames feed a Cast first and labels come from float->uint8, with identical labels."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto

    out = tb.trt_boundary_casts(tiny_onnx, tmp_path / "io.onnx")
    assert out == tmp_path / "io.onnx"
    m = onnx.load(str(out))
    users = [n for n in m.graph.node if "frames" in n.input]
    assert [n.op_type for n in users] == ["Cast"]
    assert next(a.i for a in users[0].attribute if a.name == "to") == TensorProto.FLOAT
    prod = {o: n for n in m.graph.node for o in n.output}
    last = prod["labels"]
    assert last.op_type == "Cast" and prod[last.input[0]].op_type == "Cast"
    assert next(a.i for a in prod[last.input[0]].attribute if a.name == "to") == TensorProto.FLOAT
    frames = street_frames(2, SIZE)
    for f in frames:
        a = ort.InferenceSession(str(tiny_onnx)).run(None, {"frames": f[None]})[0]
        b = ort.InferenceSession(str(out)).run(None, {"frames": f[None]})[0]
        assert b.dtype == np.uint8 and np.array_equal(a, b)
    # Already in that form: nothing to rewrite.
    assert tb.trt_boundary_casts(out, tmp_path / "again.onnx") == out


def test_console_progress_lines() -> None:
    import io

    buf = io.StringIO()
    show = tb.ConsoleProgress(buf)
    for step in range(3):
        show("TensorRT: Building engine", step, 2)
    show("TensorRT: Building engine", 2, 2)  # repeated update is not printed twice
    assert buf.getvalue() == ("TensorRT: Building engine:   0% (0/2)\rTensorRT: Building engine:  50% (1/2)\r"
                              "TensorRT: Building engine: 100% (2/2)\n")


def test_int8_calibrates_a_dynamic_batch_graph(tmp_path: Path, calib_dir: Path) -> None:
    """An ONNX exported with a dynamic batch (for --batch-range MIN<MAX) is calibrated one frame at a time."""
    import onnx
    import torch
    from precision_helpers import camvid_meta

    from rtseg.export.quantize import quantize_int8
    from rtseg.models.deploy import DeployGraph

    graph = DeployGraph(tiny_model(), camvid_meta()).eval()
    src = tmp_path / "dyn.onnx"
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, as rtseg-export uses
        torch.onnx.export(graph, (torch.zeros((1, *SIZE, 3), dtype=torch.uint8),), str(src), dynamo=False,
                          opset_version=17, input_names=["frames"], output_names=["labels"],
                          dynamic_axes={"frames": {0: "N"}, "labels": {0: "N"}})
    m = onnx.load(str(src))
    p = m.metadata_props.add()
    p.key, p.value = "rtseg.meta", camvid_meta().to_json()
    onnx.save(m, str(src))
    info = tb.read_onnx_info(src)
    assert info.batch == 0
    req = tb.make_request(info, precision="int8", batch_range=(1, 2, 4), workspace_gb=None,
                          calib_source=calib_dir, calib_frames=4, calib_method="minmax")
    assert req.batch_range == (1, 2, 4)
    rep = quantize_int8(src, tmp_path / "dyn_int8.onnx", calib_source=calib_dir, max_frames=4)
    assert rep.calibration_frames == 4 and rep.quantized_nodes > 0


def _io(labels_dtype: str = "UINT8", labels_shape: tuple[int, ...] = (-1, 64, 96), **extra: dict) -> list[dict]:
    io = [{"name": "frames", "mode": "input", "dtype": "UINT8", "shape": [-1, 64, 96, 3]},
          {"name": "labels", "mode": "output", "dtype": labels_dtype, "shape": list(labels_shape)}]
    return io + list(extra.values())


def test_engine_io_must_be_what_the_device_buffers_hold() -> None:
    """The check the TensorRT backend runs on ``io_tensors(engine)`` before sizing its buffers:
    uint8 labels [N,H,W] (an INT32/INT64 labels engine would overrun the one-byte-per-pixel
    buffer), uint8 frames [N,H,W,3], float logits only, no other input."""
    from rtseg.runtime.tensorrt_backend import check_engine_io

    shape = (1, 64, 96)
    check_engine_io(_io(), shape, "m.engine")
    check_engine_io([{**t, "shape": [1, *t["shape"][1:]]} for t in _io()], shape, "m.engine")  # static batch
    logits = {"name": "logits", "mode": "output", "dtype": "HALF", "shape": [-1, 11, 64, 96]}
    check_engine_io(_io(logits=logits), shape, "m.engine")
    bad = [
        (_io("INT32"), "'labels' is INT32"),
        (_io("INT64"), "'labels' is INT64"),
        (_io(labels_shape=(-1, 1, 64, 96)), "'labels' is UINT8 \\[-1, 1, 64, 96\\]"),
        (_io(labels_shape=(-1, 32, 48)), "rtseg runs uint8 \\[1, 64, 96\\]"),
        (_io(labels_shape=(2, 64, 96)), "'labels'"),
        ([{**_io()[0], "dtype": "FLOAT"}, _io()[1]], "'frames' is FLOAT"),
        ([{**_io()[0], "shape": [-1, 3, 64, 96]}, _io()[1]], "'frames'"),
        (_io(extra={"name": "scale", "mode": "input", "dtype": "FLOAT", "shape": [1]}), "extra input 'scale'"),
        (_io(logits={**logits, "dtype": "INT32"}), "'logits' is INT32"),
        (_io(logits={**logits, "shape": [-1, 11, 32, 48]}), "'logits'"),
        (_io()[:1], "not frames/labels"),
        ([_io()[0], {**_io()[1], "mode": "input"}], "'labels' is an input"),
    ]
    for io, match in bad:
        with pytest.raises(BackendError, match=match) as e:
            check_engine_io(io, shape, "m.engine")
        assert "\n" not in str(e.value) and "rebuild" in str(e.value)
