"""Mixed-precision FP16 ONNX: structure, and true-FP16 execution on CPU agreeing with FP32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from precision_helpers import bundled_trained_weights, camvid_dir, export, street_frames, tiny_model

from rtseg.core.errors import ExportError, UserInputError
from rtseg.export.precision import PRECISION_META_KEY, convert_to_mixed_fp16, read_precision

SIZE = (64, 96)


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("fp16")
    src = export(tiny_model(), d / "tiny.onnx", SIZE, with_logits=True)
    convert_to_mixed_fp16(src, d / "tiny_fp16.onnx")
    return src, d / "tiny_fp16.onnx"


def _types(model):
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    t = {v.name: v.type.tensor_type.elem_type for v in
         list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    t.update({i.name: i.data_type for i in inferred.graph.initializer})
    return t


def test_structure_keeps_io_and_sensitive_ops_fp32(onnx_pair: tuple[Path, Path]) -> None:
    import onnx
    from onnx import TensorProto

    src, dst = onnx_pair
    a, b = onnx.load(str(src)), onnx.load(str(dst))
    # I/O types unchanged: uint8 frames in, uint8 labels and float32 logits out.
    assert [(i.name, i.type.tensor_type.elem_type) for i in a.graph.input] == \
        [(i.name, i.type.tensor_type.elem_type) for i in b.graph.input]
    assert [(o.name, o.type.tensor_type.elem_type) for o in b.graph.output] == \
        [("labels", TensorProto.UINT8), ("logits", TensorProto.FLOAT)]
    types = _types(b)
    by_op: dict[str, list] = {}
    for n in b.graph.node:
        by_op.setdefault(n.op_type, []).append(n)
    # Convolutions compute in FP16 with FP16 weights.
    assert by_op["Conv"] and all(types[n.input[0]] == TensorProto.FLOAT16 for n in by_op["Conv"])
    assert all(types[n.input[1]] == TensorProto.FLOAT16 for n in by_op["Conv"])
    # Sensitive ops and the normalisation at the start stay FP32.
    for op in ("Sigmoid", "GlobalAveragePool", "ReduceMean"):
        assert by_op[op] and all(types[n.input[0]] == TensorProto.FLOAT for n in by_op[op]), op
    first_conv = next(i for i, n in enumerate(b.graph.node) if n.op_type == "Conv")
    for n in b.graph.node[:first_conv]:
        if n.op_type in ("Mul", "Add"):
            assert types[n.output[0]] == TensorProto.FLOAT
    # The ArgMax runs on FP16 logits (no full-size cast before it).
    assert types[by_op["ArgMax"][0].input[0]] == TensorProto.FLOAT16
    # Metadata carried over and the precision recorded.
    meta_a = {p.key: p.value for p in a.metadata_props}
    meta_b = {p.key: p.value for p in b.metadata_props}
    assert meta_b["rtseg.meta"] == meta_a["rtseg.meta"]
    assert meta_b[PRECISION_META_KEY] == "fp16" and read_precision(b) == "fp16" and read_precision(a) == "f32"


def _compare(reference, candidate, batches, class_names, **kw):
    """Parity of two (not yet active) backends, as rtseg-bench --parity runs it."""
    from rtseg.eval.parity import compare_backends

    with reference, candidate:
        return compare_backends(reference, candidate, batches, class_names, **kw)


def test_onnxruntime_runs_mixed_graph_close_to_fp32(onnx_pair: tuple[Path, Path]) -> None:
    from rtseg.core.datasets_meta import CAMVID_CLASSES
    from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend

    src, dst = onnx_pair
    frames = street_frames(4, SIZE)
    cand = OnnxRuntimeBackend(dst)
    assert str(cand.info().precision) == "fp16"  # the file's own tag, not "f32"
    rep = _compare(OnnxRuntimeBackend(src), cand, (f[None] for f in frames), CAMVID_CLASSES, candidate_name="fp16")
    assert rep.logits_checked and rep.nonfinite == 0
    assert rep.pixel_agreement >= 0.99, rep.summary()


def _ov_fp16_or_skip():
    import openvino as ov

    if "FP16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no FP16 arithmetic for OpenVINO (needs AVX512-FP16 or AMX-FP16)")


def test_openvino_executes_fp16_arithmetic(onnx_pair: tuple[Path, Path]) -> None:
    from rtseg.core.datasets_meta import CAMVID_CLASSES
    from rtseg.runtime.openvino_backend import OpenVinoBackend

    _ov_fp16_or_skip()
    src, dst = onnx_pair
    ref, cand = OpenVinoBackend(src, precision="f32"), OpenVinoBackend(dst, precision="fp16")
    with ref, cand:
        executed32, executed16 = ref.executed_precisions(), cand.executed_precisions()
    # Proof from the execution graph, not from the hint: convolutions ran in f16 here, f32 there.
    assert executed16[("Convolution", "f16")] > 0 and executed16[("Convolution", "f32")] == 0
    assert executed32[("Convolution", "f32")] > 0 and executed32[("Convolution", "f16")] == 0
    rep = _compare(ref, cand, (f[None] for f in street_frames(4, SIZE)), CAMVID_CLASSES)
    assert rep.nonfinite == 0 and rep.pixel_agreement >= 0.99, rep.summary()


def test_emulation_rounds_every_fp16_tensor(onnx_pair: tuple[Path, Path]) -> None:
    """The CPU fallback: an FP32 graph where each FP16 tensor of the mixed graph is rounded."""
    import onnx
    from onnx import TensorProto

    from rtseg.core.datasets_meta import CAMVID_CLASSES
    from rtseg.runtime.fp16_emulation import emulate_fp16_rounding
    from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend

    src, dst = onnx_pair
    mixed = onnx.load(str(dst))
    types = _types(mixed)
    produced_half = {o for n in mixed.graph.node for o in n.output if types.get(o) == TensorProto.FLOAT16}
    emu = emulate_fp16_rounding(mixed)
    etypes = _types(emu)
    # No FP16 weights or compute left; FP16 appears only as the rounding step of a cast pair.
    assert not any(t.data_type == TensorProto.FLOAT16 for t in emu.graph.initializer)
    for n in emu.graph.node:
        if n.op_type != "Cast":
            assert all(etypes.get(x) != TensorProto.FLOAT16 for x in n.input if x), n.name
    round_trips = [n for n in emu.graph.node if n.op_type == "Cast" and n.name.startswith("rtseg_round16_")]
    assert len(round_trips) == len(produced_half) >= 10
    assert {n.output[0] for n in emu.graph.node if n.name.startswith("rtseg_back32_")} == produced_half
    # It computes something different from FP32 (rounding is real) and close to it.
    frames = street_frames(4, SIZE)
    ref, cand = OnnxRuntimeBackend(src), OnnxRuntimeBackend(dst, emulate_fp16=True)
    with ref, cand:
        l32, l16 = ref.infer_with_logits(frames[:1])[1], cand.infer_with_logits(frames[:1])[1]
        assert "emulated" in cand.info().device and str(cand.info().precision) == "fp16"
    assert not np.array_equal(l32, l16) and np.abs(l32 - l16).max() < 0.05 * np.abs(l32).max()
    rep = _compare(ref, cand, (f[None] for f in frames), CAMVID_CLASSES)
    assert rep.nonfinite == 0 and rep.pixel_agreement >= 0.99, rep.summary()


def test_emulation_has_fp16_range_and_precision(tmp_path: Path) -> None:
    """Overflow beyond 65504 becomes Inf and values snap to FP16's grid, as on an FP16 device."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from rtseg.runtime.fp16_emulation import emulate_fp16_rounding

    k = numpy_helper.from_array(np.array([1000.0], dtype=np.float16), "k")
    g = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
         helper.make_node("Mul", ["xh", "k"], ["yh"]),
         helper.make_node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], [k])
    path = tmp_path / "mul.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    # A bare graph (no rtseg metadata), so a plain session runs the emulated graph with the
    # optimiser off, as the emulating backend does.
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(emulate_fp16_rounding(onnx.load(str(path))).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": np.array([100.0, 1.0001, 0.001], dtype=np.float32)})[0]
    assert np.isinf(y[0])  # 100000 > 65504
    assert y[1] == 1000.0  # 1.0001 rounds to 1.0 in FP16
    assert y[2] == np.float32(np.float16(np.float16(0.001) * np.float16(1000.0)))


def test_refuses_bad_inputs(onnx_pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, dst = onnx_pair
    with pytest.raises(UserInputError, match="not found"):
        convert_to_mixed_fp16(tmp_path / "missing.onnx", tmp_path / "x.onnx")
    out = tmp_path / "again.onnx"
    with pytest.raises(ExportError, match="already contains FP16"):
        convert_to_mixed_fp16(dst, out)
    assert not out.exists() and not list(tmp_path.glob(".again*"))  # atomic: nothing left behind


def _camvid_frames(n: int) -> np.ndarray:
    d = camvid_dir()
    if d is None:
        pytest.skip("CamVid not found (expected at ../shared/datasets/camvid beside the repo)")
    from rtseg.pipeline.sampling import read_frames

    return read_frames(d / "val" / "images", (360, 480), n)


@pytest.mark.slow
def test_camvid_random_weights_stdc1_fp16_agreement(tmp_path: Path) -> None:
    """Random weights: class margins are tiny, so this is the hard case for FP16 agreement."""
    import torch

    from rtseg.core.datasets_meta import CAMVID_CLASSES
    from rtseg.models import create_model
    from rtseg.runtime.openvino_backend import OpenVinoBackend

    _ov_fp16_or_skip()
    frames = _camvid_frames(3)
    torch.manual_seed(0)
    src = export(create_model("stdc1", 11), tmp_path / "stdc1.onnx", (360, 480))
    dst = tmp_path / "stdc1_fp16.onnx"
    convert_to_mixed_fp16(src, dst)
    rep = _compare(OpenVinoBackend(src, precision="f32"), OpenVinoBackend(dst, precision="fp16"),
                   (f[None] for f in frames), CAMVID_CLASSES)
    assert rep.pixel_agreement >= 0.995, rep.summary()


@pytest.mark.slow
def test_camvid_trained_model_fp16_agreement(tmp_path: Path) -> None:
    """Issue acceptance: the bundled trained model, FP16 vs FP32 on real CamVid frames, >= 99.5%."""
    from rtseg.eval.parity import FP16_MIN_AGREEMENT, check_fp16
    from rtseg.runtime.openvino_backend import OpenVinoBackend

    weights = bundled_trained_weights()
    if weights is None:
        pytest.skip("no bundled trained CamVid checkpoint in assets/ yet")
    _ov_fp16_or_skip()
    frames = _camvid_frames(10)
    from rtseg.export.onnx_export import export_onnx
    from rtseg.models.checkpoint import load_model

    loaded = load_model(weights)
    src = tmp_path / "trained.onnx"
    export_onnx(loaded.model, loaded.meta, input_size=(360, 480), path=src, verify=False)
    dst = tmp_path / "trained_fp16.onnx"
    convert_to_mixed_fp16(src, dst)
    rep = _compare(OpenVinoBackend(src, precision="f32"), OpenVinoBackend(dst, precision="fp16"),
                   (f[None] for f in frames), loaded.meta.class_names)
    check_fp16(rep, min_agreement=FP16_MIN_AGREEMENT)


@pytest.mark.slow
def test_camvid_trained_model_fp16_emulated_agreement(tmp_path: Path) -> None:
    """The same acceptance on any CPU: FP16 rounding emulated (FP16 weights and tensors), >= 99.5%."""
    from rtseg.eval.parity import FP16_MIN_AGREEMENT, check_fp16
    from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend

    weights = bundled_trained_weights()
    if weights is None:
        pytest.skip("no bundled trained CamVid checkpoint in assets/ yet")
    frames = _camvid_frames(10)
    from rtseg.export.onnx_export import export_onnx
    from rtseg.models.checkpoint import load_model

    loaded = load_model(weights)
    src = tmp_path / "trained.onnx"
    export_onnx(loaded.model, loaded.meta, input_size=(360, 480), path=src, verify=False, with_logits=True)
    dst = tmp_path / "trained_fp16.onnx"
    convert_to_mixed_fp16(src, dst)
    rep = _compare(OnnxRuntimeBackend(src), OnnxRuntimeBackend(dst, emulate_fp16=True), (f[None] for f in frames),
                   loaded.meta.class_names)
    print(f"\n[report] {rep.summary()}")
    assert rep.logits_checked and rep.nonfinite == 0
    check_fp16(rep, min_agreement=FP16_MIN_AGREEMENT)


def test_parity_on_a_video_source(onnx_pair: tuple[Path, Path], tmp_path: Path) -> None:
    """The rtseg-bench --parity entry point on a real video file (frames written with cv2.VideoWriter)."""
    import cv2

    from rtseg.benchmark.parity import parity_on_source
    from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend

    src, dst = onnx_pair
    video = tmp_path / "clip.mp4"
    vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (SIZE[1], SIZE[0]))
    for f in street_frames(5, SIZE):
        vw.write(f)
    vw.release()
    with OnnxRuntimeBackend(src) as ref, OnnxRuntimeBackend(dst) as cand:
        # the candidate's precision (the file's fp16 tag) picks the acceptance rule
        rep = parity_on_source(ref, cand, video, min_agreement=0.99)
        assert rep.frames == 5 and rep.logits_checked and rep.nonfinite == 0 and rep.candidate == "fp16"
        with pytest.raises(ExportError, match="agree"):
            parity_on_source(ref, cand, video, precision="fp16", min_agreement=1.01)
