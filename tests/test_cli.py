"""Console scripts: bad input exits non-zero with one line saying what to do, and leaves no output."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest
from _paths import SMALL_SIZE

from rtseg.cli import bench, export, run

SIZE = f"{SMALL_SIZE[0]}x{SMALL_SIZE[1]}"


def _one_line_error(capsys, prog):
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{prog}: error: "), err
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, needle", [
    (["--model", "stdc9", "--input-size", SIZE], "unknown model"),
    (["--model", "stdc1", "--input-size", "361x480"], "multiple of 8"),
    (["--model", "stdc1", "--input-size", "big"], "HEIGHTxWIDTH"),
    (["--model", "stdc1", "--weights", "nope.pth", "--input-size", SIZE], "does not exist"),
    (["--input-size", SIZE], "say which model"),
    (["--model", "stdc1", "--num-classes", "1", "--input-size", SIZE], "num-classes"),
])
def test_export_bad_input(argv, needle, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert export.main([*argv, "-o", str(out)]) != 0
    assert needle in _one_line_error(capsys, "rtseg-export")
    assert list(tmp_path.iterdir()) == []


def test_export_not_a_checkpoint(tmp_path, capsys):
    junk = tmp_path / "w.pth"
    junk.write_text("hello")
    out = tmp_path / "m.onnx"
    assert export.main(["--weights", str(junk), "--input-size", SIZE, "-o", str(out)]) != 0
    _one_line_error(capsys, "rtseg-export")
    assert not out.exists()


def test_export_writes_verified_onnx(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert export.main(["--model", "bisenetv2", "--num-classes", "11", "--input-size", SIZE, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "RANDOM, UNTRAINED" in text and "agree on" in text
    assert out.is_file()


@pytest.mark.parametrize("source, needle", [
    ("missing.mp4", "not found"),
    ("notavideo.mp4", ""),
])
def test_bench_bad_source(source, needle, tmp_path, capsys):
    (tmp_path / "notavideo.mp4").write_text("not a video")
    js = tmp_path / "r.json"
    rc = bench.main(["--model", "stdc1", "--input-size", SIZE, "--source", str(tmp_path / source),
                     "--json", str(js), "--frames", "2"])
    assert rc != 0
    assert needle in _one_line_error(capsys, "rtseg-bench")
    assert not js.exists()


@pytest.mark.parametrize("argv, needle", [
    (["--backend", "quantum"], "unknown backend"),
    (["--frames", "0"], "--frames"),
    (["--input-size", "100x100"], "multiple of 8"),
])
def test_bench_bad_args(argv, needle, tmp_path, capsys):
    js = tmp_path / "r.json"
    base = ["--model", "stdc1", "--input-size", SIZE, "--source", "synthetic:160x120", "--json", str(js)]
    assert bench.main([*base, *argv]) != 0
    assert needle in _one_line_error(capsys, "rtseg-bench")
    assert not js.exists()


def test_bench_compare_runs_and_writes_json(small_onnx, tmp_path, capsys):
    js = tmp_path / "r.json"
    rc = bench.main(["--onnx", str(small_onnx), "--compare", "onnxruntime,openvino:f32", "--source",
                     "synthetic:320x240", "--frames", "6", "--warmup", "2", "--json", str(js)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "=== Compare" in text and "end_to_end" in text
    rep = json.loads(js.read_text())
    assert [r["label"] for r in rep["runs"]] == ["onnxruntime f32", "openvino f32"]
    for r in rep["runs"]:
        assert r["frames"] == 6 and r["e2e_fps"] > 0 and r["infer_only_fps"] > 0
        assert set(r["stages"]) >= {"decode", "preprocess", "infer", "postprocess", "end_to_end"}
        assert r["stages"]["infer"]["n"] == 6


def test_run_writes_playable_overlay(small_onnx, small_video, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    assert run.main([str(small_video), "--onnx", str(small_onnx), "--backend", "onnxruntime", "-o", str(out)]) == 0
    cap = cv2.VideoCapture(str(out))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, img = cap.read()
    cap.release()
    assert ok and img.shape == (120, 160, 3) and n == 40
    assert "40 frames" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["missing.mp4"], "not found"),
    (["synthetic:64x64", "--alpha", "2"], "--alpha"),
    (["synthetic:64x64", "-o", "x.gif"], ".mp4"),
])
def test_run_bad_input(argv, needle, small_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run.main([*argv, "--onnx", str(small_onnx)]) != 0
    assert needle in _one_line_error(capsys, "rtseg-run")
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.gif").exists()


def test_console_script_entry_point():
    exe = [sys.executable, "-m", "rtseg.cli.export", "--model", "nope", "--input-size", SIZE]
    p = subprocess.run(exe, capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "unknown model" in p.stderr


def test_bench_parity_fp16_reports_agreement_iou_and_nan_check(tmp_path, capsys, monkeypatch):
    from _paths import SAMPLE_CLIP

    monkeypatch.chdir(tmp_path)  # the FP32 export is cached under ./engines

    js = tmp_path / "p.json"
    rc = bench.main(["--model", "stdc1", "--num-classes", "11", "--input-size", SIZE, "--parity", "fp16",
                     "--source", str(SAMPLE_CLIP), "--frames", "6", "--json", str(js)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "pixel agreement" in out and "NaN/Inf in logits: 0" in out and "per-class IoU" in out
    rep = json.loads(js.read_text())
    assert rep["frames"] == 6 and rep["logits_checked"] and rep["nonfinite"] == 0
    assert 0.99 <= rep["pixel_agreement"] <= 1.0
    # The report says how FP16 was executed: true FP16 arithmetic, or emulated rounding on CPUs without it.
    from rtseg.benchmark.parity import cpu_has_fp16_arithmetic

    assert ("OpenVINO f16" if cpu_has_fp16_arithmetic() else "FP16 rounding emulated") in rep["candidate"]


def test_engine_without_tensorrt_says_how_to_get_it(tmp_path, capsys):
    assert export.main(["--model", "stdc1", "--input-size", SIZE, "--format", "engine",
                        "--out-dir", str(tmp_path)]) != 0
    assert "TensorRT" in _one_line_error(capsys, "rtseg-export")
    assert list(tmp_path.iterdir()) == []


def test_int8_needs_calibration_frames(tmp_path, capsys):
    assert export.main(["--model", "stdc1", "--input-size", SIZE, "--precision", "int8", "-o",
                        str(tmp_path / "q.onnx")]) != 0
    assert "--calib-source" in _one_line_error(capsys, "rtseg-export")
    assert list(tmp_path.iterdir()) == []
