"""The one resolution of "which model, which artifact, which backend, which precision" (rtseg.resolve)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _paths import SMALL_SIZE

from rtseg.core.errors import BackendError, RtsegError, UserInputError
from rtseg.core.precision import Precision
from rtseg.resolve.backend import backend_kind, resolve
from rtseg.resolve.model import ModelChoice, resolve_model
from rtseg.runtime import trt_compat

HAS_TRT = trt_compat.tensorrt_available()


def onnx_choice(path: Path) -> ModelChoice:
    return ModelChoice(None, None, None, None, path)


def zoo_choice() -> ModelChoice:
    return ModelChoice("stdc1", None, 11, SMALL_SIZE, None)


def args(**kw) -> SimpleNamespace:
    base = dict(model=None, weights=None, num_classes=None, input_size=None, onnx=None, engine=None)
    return SimpleNamespace(**{**base, **kw})


def test_command_line_arguments_name_one_artifact(tmp_path: Path, small_onnx: Path) -> None:
    assert resolve_model(args(engine="m.engine")).engine == Path("m.engine")
    assert resolve_model(args(onnx=str(small_onnx))).onnx == small_onnx
    c = resolve_model(args(model="stdc1", num_classes=11, input_size="72x96"))
    assert (c.model, c.num_classes, c.input_size, c.artifact_kind) == ("stdc1", 11, (72, 96), "checkpoint")
    with pytest.raises(UserInputError, match="either --onnx or --engine"):
        resolve_model(args(onnx="a.onnx", engine="b.engine"))
    with pytest.raises(UserInputError, match="--engine names a complete artifact"):
        resolve_model(args(engine="b.engine", model="stdc1"))
    with pytest.raises(UserInputError, match="does not exist"):
        resolve_model(args(weights=str(tmp_path / "none.pt")))
    assert ModelChoice.from_artifact(small_onnx).artifact_kind == "onnx"


def test_one_rule_set_for_backends_and_artifacts(small_onnx: Path, engine_pair: Path) -> None:
    eng = ModelChoice(None, None, None, None, None, engine_pair)
    assert backend_kind(eng) == "trt" and backend_kind(zoo_choice()) == "openvino"
    assert backend_kind(onnx_choice(small_onnx), None, default_backend="ort") == "onnxruntime"
    with pytest.raises(UserInputError, match="trt backend only, not openvino"):
        resolve(eng, "openvino")
    with pytest.raises(UserInputError, match="pass --engine PATH"):
        resolve(zoo_choice(), "trt")
    with pytest.raises(UserInputError, match="--onnx runs on onnxruntime or openvino, not torch"):
        resolve(onnx_choice(small_onnx), "torch")
    with pytest.raises(UserInputError, match="unknown backend"):
        resolve(zoo_choice(), "cuda-magic")
    res = resolve(onnx_choice(small_onnx), "ov")
    assert (res.kind, res.precision, res.artifact) == ("openvino", Precision.F32, small_onnx)
    with res.create() as be:
        assert be.infer(np.zeros((1, *SMALL_SIZE, 3), np.uint8)).shape == (1, *SMALL_SIZE)
    assert resolve(onnx_choice(small_onnx), "openvino", "bfloat16").precision is Precision.BF16
    assert resolve(onnx_choice(small_onnx), "onnxruntime").describe() == f"{small_onnx.name} on onnxruntime (f32)"


def test_precision_is_checked_before_anything_is_exported(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # an export would land in ./engines
    with pytest.raises(BackendError, match="runs f32, not int8.*rtseg-export --precision int8"):
        resolve(zoo_choice(), "onnxruntime", "int8")
    with pytest.raises(BackendError, match="use --backend openvino for bf16"):
        resolve(zoo_choice(), "torch", "bf16")
    with pytest.raises(UserInputError, match="unknown precision"):
        resolve(zoo_choice(), "openvino", "int4")
    assert not (tmp_path / "engines").exists()
    # torch-cuda's default is fp16, resolved without CUDA (only activate needs the GPU)
    assert resolve(zoo_choice(), "torch-cuda").precision is Precision.FP16


def test_an_int8_onnx_resolves_to_int8(int8_onnx: Path) -> None:
    for kind in ("onnxruntime", "openvino"):
        res = resolve(onnx_choice(int8_onnx), kind)
        assert res.precision is Precision.INT8 and res.describe().endswith("(int8)")
    with pytest.raises(BackendError, match="its precision was fixed when it was exported"):
        resolve(onnx_choice(int8_onnx), "onnxruntime", "bf16")
    # OpenVINO takes a float precision for the layers an INT8 graph keeps in float.
    res = resolve(onnx_choice(int8_onnx), "openvino", "bf16")
    assert res.precision is Precision.INT8
    with res.create() as be:
        assert be.info().extra["float_layers"] == "bf16"


def test_the_gui_resolves_lazily_and_exports_on_the_inference_thread(tmp_path: Path, monkeypatch) -> None:
    """eager=False reads no file and imports no framework; the factory exports, then builds."""
    code = ("import sys\n"
            "from rtseg.resolve.backend import resolve\n"
            "from rtseg.resolve.model import ModelChoice\n"
            "res = resolve(ModelChoice('stdc1', None, 11, (72, 96), None), 'openvino', None, eager=False)\n"
            "assert res.artifact is None and res.kind == 'openvino'\n"
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'PyQt6') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    res = resolve(zoo_choice(), "onnxruntime", None, eager=False)
    assert not (tmp_path / "engines").exists()
    be = res.factory()
    assert be.input_shape == (1, *SMALL_SIZE) and list((tmp_path / "engines").glob("stdc1_72x96_*.onnx"))
    with pytest.raises(UserInputError, match="trt backend only"):  # still checked at once when it needs no file
        resolve(ModelChoice(None, None, None, None, None, Path("m.engine")), "openvino", eager=False)


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown when TensorRT is absent")
def test_an_engine_without_tensorrt_fails_in_one_line_naming_it(engine_pair: Path) -> None:
    with pytest.raises(RtsegError, match="TensorRT is not installed") as e:
        resolve(ModelChoice(None, None, None, None, None, engine_pair))
    assert "\n" not in str(e.value)
    lazy = resolve(ModelChoice(None, None, None, None, None, engine_pair), eager=False)
    assert lazy.kind == "trt" and lazy.artifact == engine_pair  # the GUI hears it from the inference thread


def test_a_refined_zoo_model_keeps_its_refinement() -> None:
    c = ModelChoice("stdc1", None, 11, SMALL_SIZE, None, refine="crf")
    assert c.describe().endswith("+ crf refinement")
    with pytest.raises(UserInputError, match="CRF refinement runs on the torch backend"):
        resolve(c, "torch-cuda")
    be = resolve(c, "torch").create()
    assert "refine" in be.meta.extra  # the graph the backend runs has the CRF
