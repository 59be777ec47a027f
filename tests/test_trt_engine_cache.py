"""Engine cache: names, keys, sidecar contents, compatibility messages, atomic publication (no TensorRT needed)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from precision_helpers import camvid_meta

from rtseg.core.errors import BackendError, UserInputError
from rtseg.export import engine_cache as ec

H100 = ec.Platform("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0", driver="570.86", cuda="12.8")
REQ = ec.BuildRequest(onnx_sha256="ab" * 32, model="stdc1", precision="fp16", input_size=(360, 480),
                      batch_range=(1, 2, 4), workspace_gb=4.0)


def _publish(out: Path, req: ec.BuildRequest = REQ, platform: ec.Platform = H100) -> ec.EnginePaths:
    paths = ec.engine_paths(out, req, platform)
    side = ec.make_sidecar(req, platform, camvid_meta("stdc1"), engine=paths.engine, key=paths.key,
                           build_seconds=12.5, trtexec=ec.trtexec_command("m.onnx", paths.engine, req),
                           rebuild="rtseg-export --model stdc1 --format engine --precision fp16")
    ec.publish(paths, b"plan-bytes", side)
    return paths


def test_batch_range_parsing() -> None:
    assert ec.parse_batch_range("1:4:8") == (1, 4, 8)
    assert ec.parse_batch_range("2") == (2, 2, 2)
    assert ec.parse_batch_range(None, batch=3) == (3, 3, 3)
    for bad in ("4:2:8", "0:1:1", "1:2", "a:b:c"):
        with pytest.raises(UserInputError, match="batch-range"):
            ec.parse_batch_range(bad)
    with pytest.raises(UserInputError, match="precision"):
        replace(REQ, precision="int4")
    with pytest.raises(UserInputError, match="built at f32, fp16, int8, not bf16"):
        replace(REQ, precision="bf16")
    assert replace(REQ, precision="fp32").precision == replace(REQ, precision="f32").precision == "f32"


def test_name_and_key_carry_everything_that_makes_an_engine_valid(tmp_path: Path) -> None:
    p = ec.engine_paths(tmp_path, REQ, H100)
    assert p.engine.name.startswith("stdc1_360x480_b1-2-4_fp16_trt10.13_sm90_abababab_")
    assert p.engine.suffix == ".engine" and p.sidecar == p.engine.with_suffix(".json")
    assert ec.engine_paths(tmp_path, REQ, H100) == p  # same request, same files
    variants = [
        (replace(REQ, precision="int8", calib_fingerprint="c1"), H100),
        (replace(REQ, batch_range=(1, 1, 1)), H100),
        (replace(REQ, onnx_sha256="cd" * 32), H100),
        (replace(REQ, input_size=(368, 480)), H100),
        (replace(REQ, workspace_gb=8.0), H100),
        (REQ, replace(H100, trt_version="11.0.0.9")),
        (REQ, replace(H100, compute_capability="8.9", gpu_name="NVIDIA L4")),
    ]
    keys = {p.key} | {ec.engine_paths(tmp_path, r, pl).key for r, pl in variants}
    assert len(keys) == len(variants) + 1
    # The GPU's name or driver does not change what the engine is.
    same = ec.engine_paths(tmp_path, REQ, replace(H100, gpu_name="NVIDIA H100 PCIe", driver="580.1"))
    assert same.key == p.key


def test_sidecar_holds_the_full_description(tmp_path: Path) -> None:
    paths = _publish(tmp_path)
    assert paths.engine.read_bytes() == b"plan-bytes"  # the plan is stored untouched
    side = json.loads(paths.sidecar.read_text())
    meta = camvid_meta("stdc1")
    assert side["model"] == "stdc1" and side["meta"]["class_names"] == list(meta.class_names)
    assert side["meta"]["palette"] == [list(c) for c in meta.palette]
    assert side["meta"]["mean"] == list(meta.mean) and side["meta"]["std"] == list(meta.std)
    assert side["input"] == {"name": "frames", "dtype": "uint8", "layout": "NHWC", "channels": "BGR",
                             "size": [360, 480], "batch_range": [1, 2, 4]}
    assert side["precision"] == "fp16" and side["onnx_sha256"] == "ab" * 32
    assert side["platform"] == {"trt_version": "10.13.0.35", "gpu_name": "NVIDIA H100 80GB HBM3",
                                "compute_capability": "9.0", "driver": "570.86", "cuda": "12.8"}
    assert side["build_options"]["workspace_gb"] == 4.0 and side["build_options"]["strongly_typed"] is True
    assert side["build_seconds"] == 12.5 and side["built_at"].endswith("Z")
    assert side["trtexec"].startswith("trtexec --onnx=m.onnx ")
    for flag in ("--stronglyTyped", "--minShapes=frames:1x360x480x3", "--optShapes=frames:2x360x480x3",
                 "--maxShapes=frames:4x360x480x3", "--memPoolSize=workspace:4096M"):
        assert flag in side["trtexec"]
    assert "--fp16" not in side["trtexec"]  # precision is in the graph (strongly typed)
    assert ec.find_cached(paths)


def test_compatibility_check_says_what_differs(tmp_path: Path) -> None:
    paths = _publish(tmp_path)
    assert ec.check_compatible(paths.engine, H100)["key"] == paths.key
    # Same architecture, other board and driver: fine.
    ec.check_compatible(paths.engine, replace(H100, gpu_name="NVIDIA H100 PCIe", driver="580.1"))
    # Patch releases of the same TensorRT minor version: fine.
    ec.check_compatible(paths.engine, replace(H100, trt_version="10.13.2.6"))
    with pytest.raises(BackendError) as e:
        ec.check_compatible(paths.engine, replace(H100, trt_version="11.0.0.9"))
    msg = str(e.value)
    assert "TensorRT 10.13.0.35 (here 11.0.0.9)" in msg and "--rebuild-on-mismatch" in msg
    assert "rtseg-export --model stdc1 --format engine --precision fp16" in msg and "\n" not in msg
    with pytest.raises(BackendError, match=r"compute capability 9.0 \[NVIDIA H100 80GB HBM3\] "
                                           r"\(here 8.9 \[NVIDIA L4\]\)"):
        ec.check_compatible(paths.engine, replace(H100, compute_capability="8.9", gpu_name="NVIDIA L4"))


def test_missing_or_damaged_sidecar_is_refused(tmp_path: Path) -> None:
    paths = _publish(tmp_path)
    paths.sidecar.write_text("{not json")
    assert not ec.find_cached(paths)
    with pytest.raises(BackendError, match="unreadable"):
        ec.check_compatible(paths.engine, H100)
    paths.sidecar.unlink()
    assert not ec.find_cached(paths)
    with pytest.raises(BackendError, match="has no sidecar"):
        ec.check_compatible(paths.engine, H100)
    with pytest.raises(BackendError, match="not found"):
        ec.check_compatible(tmp_path / "nope.engine", H100)
    # A sidecar for another key does not count as a cache hit.
    other = _publish(tmp_path / "o")
    other.sidecar.write_text(json.dumps({**json.loads(other.sidecar.read_text()), "key": "x"}))
    assert not ec.find_cached(other)


def test_interrupted_publish_leaves_nothing(tmp_path: Path) -> None:
    paths = ec.engine_paths(tmp_path, REQ, H100)
    with pytest.raises(KeyboardInterrupt):
        with ec.publish_pair(paths) as (tmp_engine, tmp_side):
            tmp_engine.write_bytes(b"half a plan")
            tmp_side.write_text("{}")
            raise KeyboardInterrupt  # Ctrl-C while writing
    assert list(tmp_path.iterdir()) == []


def test_calibration_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"1234")
    f1 = ec.calib_fingerprint(tmp_path, 64, "minmax")
    assert f1 == ec.calib_fingerprint(tmp_path, 64, "minmax")
    assert f1 != ec.calib_fingerprint(tmp_path, 32, "minmax")
    (tmp_path / "b.jpg").write_bytes(b"5678")
    assert f1 != ec.calib_fingerprint(tmp_path, 64, "minmax")
    with pytest.raises(UserInputError, match="does not exist"):
        ec.calib_fingerprint(tmp_path / "missing", 64, "minmax")


def test_a_second_checkpoint_does_not_evict_the_first(tmp_path: Path) -> None:
    """Two checkpoints of one model at one size, batch and precision keep one engine each; only an
    engine of the *same* ONNX built elsewhere (another TensorRT/GPU, other options) is stale."""
    from rtseg.export import tensorrt_build as tb

    first = _publish(tmp_path)  # stdc1 360x480 b1-2-4 fp16 from ONNX ab...
    other = replace(REQ, onnx_sha256="cd" * 32)  # another checkpoint's export
    other_paths = ec.engine_paths(tmp_path, other, H100)
    assert other_paths.engine.name.split("_trt")[0] == first.engine.name.split("_trt")[0]  # same name prefix
    assert tb.stale_engines(tmp_path, other_paths, other.onnx_sha256) == []
    second = _publish(tmp_path, other)
    assert first.engine.is_file() and second.engine.is_file()
    # The first checkpoint's ONNX built for an older TensorRT is what --rebuild-on-mismatch replaces.
    older = _publish(tmp_path, REQ, replace(H100, trt_version="10.12.0.36"))
    assert tb.stale_engines(tmp_path, first, REQ.onnx_sha256) == [older.engine]
    assert tb.stale_engines(tmp_path, second, other.onnx_sha256) == []
