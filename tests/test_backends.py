"""Every CPU backend runs the same deploy graph and gives the same labels (f32)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _paths import SAMPLE_CLIP, SMALL_SIZE

from rtseg.core.errors import BackendError, UserInputError
from rtseg.export.onnx_export import verification_frames
from rtseg.runtime.factory import create_backend


@pytest.fixture(scope="module")
def frames():
    return verification_frames(6, *SMALL_SIZE, sample_video=SAMPLE_CLIP)


def _labels(backend, frames):
    with backend as be:
        return np.concatenate([be.infer(frames[i:i + 1]) for i in range(len(frames))])


def test_f32_backends_agree_exactly_enough(small_onnx, frames):
    ort = _labels(create_backend("onnxruntime", small_onnx), frames)
    ov = _labels(create_backend("openvino", small_onnx, precision="f32"), frames)
    pt = _labels(create_backend("torch", None, model="stdc1", num_classes=11, input_size=SMALL_SIZE), frames)
    assert ort.dtype == ov.dtype == pt.dtype == np.uint8
    assert ort.shape == (6, *SMALL_SIZE)
    # Same graph, f32 everywhere: only argmax ties within float rounding may differ.
    assert np.mean(ort == pt) >= 0.9999
    assert np.mean(ov == pt) >= 0.9999


def test_bf16_agreement_is_reported(small_onnx, frames, record_property, capsys):
    be = create_backend("openvino", small_onnx, precision="bf16")
    bf16 = _labels(be, frames)
    f32 = _labels(create_backend("onnxruntime", small_onnx), frames)
    agreement = float(np.mean(bf16 == f32))
    record_property("bf16_vs_f32_pixel_agreement", agreement)
    with capsys.disabled():
        print(f"\n[report] OpenVINO {be.info().precision} vs f32 label agreement (random weights): {agreement:.4%}")
    assert be.info().precision in ("bf16", "f32")  # f32 only on CPUs without bf16 support
    assert 0.0 <= agreement <= 1.0


def test_backend_info_and_meta(small_onnx):
    with create_backend("openvino", small_onnx, precision="f32", threads=1) as be:
        info = be.info()
        assert info.backend == "openvino" and info.precision == "f32" and info.threads == 1
        assert be.meta.num_classes == 11 and be.input_shape == (1, *SMALL_SIZE)
    with create_backend("ort", small_onnx) as be:
        assert be.info().precision == "f32"


def test_infer_checks_input(small_onnx):
    with create_backend("onnxruntime", small_onnx) as be:
        with pytest.raises(BackendError, match="resize frames"):
            be.infer(np.zeros((1, 10, 10, 3), np.uint8))
        with pytest.raises(BackendError, match="batch"):
            be.infer(np.zeros((2, *SMALL_SIZE, 3), np.uint8))
    be = create_backend("onnxruntime", small_onnx)
    with pytest.raises(BackendError, match="before activate"):
        be.infer(np.zeros((1, *SMALL_SIZE, 3), np.uint8))


def test_bad_artifacts(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        create_backend("onnxruntime", tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx file")
    with pytest.raises(BackendError, match="not a readable ONNX"):
        create_backend("openvino", junk)
    with pytest.raises(UserInputError, match="unknown backend"):
        create_backend("cuda-magic", junk)
    with pytest.raises(UserInputError, match="precision"):
        create_backend("openvino", junk, precision="int4")


def test_onnx_backends_do_not_import_torch_or_qt(small_onnx):
    code = (
        "import sys, numpy as np\n"
        "import rtseg\n"
        "assert 'torch' not in sys.modules and 'PyQt6' not in sys.modules\n"
        "from rtseg.runtime.factory import create_backend\n"
        f"for kind in ('onnxruntime', 'openvino'):\n"
        f"    with create_backend(kind, {str(small_onnx)!r}, precision='f32') as be:\n"
        f"        be.infer(np.zeros((1, {SMALL_SIZE[0]}, {SMALL_SIZE[1]}, 3), np.uint8))\n"
        "bad = [m for m in ('torch', 'PyQt6', 'tensorrt') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_cuda_puts_a_copy_of_the_weights_on_the_device():
    """Module.to() moves in place: the device graph must be built from a copy, so that dropping it in
    deactivate() frees every device tensor and the CPU model stays on the CPU (checked on PyTorch's
    'meta' device, which stands for any device here without a GPU)."""
    import torch

    from rtseg.runtime.torch_cuda_backend import TorchCudaBackend

    be = TorchCudaBackend(None, model="stdc1", num_classes=11, input_size=(64, 64))
    graph = be._device_graph(torch.device("meta"))
    assert graph.model is not be._loaded.model
    assert {p.device.type for p in graph.parameters()} == {"meta"}
    assert {p.device.type for p in be._loaded.model.parameters()} == {"cpu"}  # untouched by the move
    assert str(be.info().precision) == "fp16"  # torch-cuda's default, before any GPU is touched


def test_logits_are_an_optional_output_of_the_backend(small_onnx, tmp_path, frames):
    from rtseg.export.onnx_export import export_onnx
    from rtseg.models.deploy import load_for_deploy

    loaded = load_for_deploy("stdc1", 11, None)
    with_logits = tmp_path / "logits.onnx"
    export_onnx(loaded.model, loaded.meta, input_size=SMALL_SIZE, path=with_logits, with_logits=True, verify=False)
    f = frames[:1]
    for be in (create_backend("onnxruntime", with_logits), create_backend("openvino", with_logits),
               create_backend("torch", None, model="stdc1", num_classes=11, input_size=SMALL_SIZE)):
        with be:
            assert be.has_logits
            labels, logits = be.infer_with_logits(f)
            assert logits.shape == (1, 11, *SMALL_SIZE) and logits.dtype == np.float32
            assert np.mean(labels == logits.argmax(1)) > 0.999 and np.mean(labels == be.infer(f)) > 0.999
    with create_backend("onnxruntime", small_onnx) as be:
        assert not be.has_logits
        with pytest.raises(BackendError, match="no logits output; export the ONNX with rtseg-export --logits"):
            be.infer_with_logits(f)


def test_openvino_two_requests_in_flight_give_infer_s_labels(small_onnx, frames):
    """Two asynchronous infer requests, kept full (submit n+1 before collect n), return exactly what
    the synchronous infer() returns for every frame, in submission order."""
    with create_backend("openvino", small_onnx, precision="f32", requests=2) as be:
        assert be.max_in_flight == 2
        want = [be.infer(frames[i:i + 1]) for i in range(len(frames))]
        got = []
        be.submit(frames[0:1])
        for i in range(1, len(frames)):
            be.submit(frames[i:i + 1])
            got.append(be.collect())
        got.append(be.collect())
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)


def test_openvino_two_streams_give_the_same_labels_and_say_so(small_onnx, frames):
    """``streams=2`` (THROUGHPUT hint) with three requests in flight compiles two streams and
    returns, in submission order, the labels of the one-stream backend; it needs two requests."""
    with create_backend("openvino", small_onnx, precision="f32", requests=2) as one:
        want = [one.infer(frames[i:i + 1]) for i in range(len(frames))]
    with create_backend("openvino", small_onnx, precision="f32", requests=3, streams=2) as be:
        assert int(be._compiled.get_property("NUM_STREAMS")) == 2 and be.max_in_flight == 3
        info = be.info()
        assert info.extra["streams"] == 2 and info.schedule_text == "3 in flight, 2 streams"
        got = []
        be.submit(frames[0:1])
        be.submit(frames[1:2])
        for i in range(2, len(frames)):
            be.submit(frames[i:i + 1])
            got.append(be.collect())
        while be.in_flight:
            got.append(be.collect())
    for g, w in zip(got, want, strict=True):
        assert np.mean(g == w) > 0.999  # same precision; a stream's own threading may flip a tie
    with pytest.raises(BackendError, match="streams must be 1, or 2 with at least 2 requests"):
        create_backend("openvino", small_onnx, precision="f32", streams=2)
    with create_backend("openvino", small_onnx, precision="f32") as be:
        assert be.info().schedule_text == ""  # one request, one stream
