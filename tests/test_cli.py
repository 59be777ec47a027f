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
    (["--rounds", "0"], "--rounds"),
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


def test_bench_interleaves_rounds_and_counts_every_frame_once(small_onnx, tmp_path, capsys):
    """--rounds 3: inference-only and end to end alternate in three parts (3+2+2 frames), each
    figure a total over the parts, the latency table over every part."""
    from rtseg.benchmark.runner import split_rounds

    assert split_rounds(7, 3) == [3, 2, 2] and split_rounds(2, 5) == [1, 1] and split_rounds(5, 1) == [5]
    js = tmp_path / "r.json"
    assert bench.main(["--onnx", str(small_onnx), "--backend", "openvino", "--precision", "f32", "--source",
                       "synthetic:320x240", "--frames", "7", "--warmup", "2", "--rounds", "3",
                       "--json", str(js)]) == 0
    out = capsys.readouterr().out
    r = json.loads(js.read_text())["runs"][0]
    # each round's end-to-end / inference-only, and their range on the throughput line
    assert len(r["round_ratios"]) == 3 and all(x > 0 for x in r["round_ratios"])
    lo, hi = min(r["round_ratios"]), max(r["round_ratios"])
    assert f"(3 interleaved rounds, {lo:.2f}-{hi:.2f} each)" in out
    assert r["rounds"] == 3 and r["frames"] == 7 and r["e2e_fps"] > 0 and r["infer_only_fps"] > 0
    assert r["stages"]["infer"]["n"] == 7 and r["stages"]["end_to_end"]["n"] == 7 and r["infer_only"]["n"] == 7


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
    from rtseg.runtime.openvino_backend import cpu_has_fp16_arithmetic

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


# -- one path from command to backend: --engine everywhere, typed precision, the same stages ----------

def _trt_missing() -> bool:
    from rtseg.runtime import trt_compat

    return not trt_compat.tensorrt_available()


@pytest.mark.skipif(not _trt_missing(), reason="checks the message shown when TensorRT is absent")
@pytest.mark.parametrize("prog", ["rtseg", "rtseg-run", "rtseg-bench", "rtseg-eval"])
def test_every_command_takes_an_engine_and_names_tensorrt_without_it(prog, engine_pair, tmp_path, capsys,
                                                                     monkeypatch):
    from rtseg.cli import app
    from rtseg.cli import eval as evaluate
    from rtseg.data.synth import write_synthetic_dataset

    monkeypatch.chdir(tmp_path)
    e = str(engine_pair)
    data = write_synthetic_dataset(tmp_path / "ds", splits={"val": 2}, num_classes=11)
    main, argv = {
        "rtseg": (app.main, ["synthetic:64x64", "--headless", "--engine", e, "--max-frames", "1"]),
        "rtseg-run": (run.main, ["synthetic:64x64", "--engine", e, "--max-frames", "1"]),
        "rtseg-bench": (bench.main, ["--engine", e, "--source", "synthetic:64x64", "--frames", "1"]),
        "rtseg-eval": (evaluate.main, ["--engine", e, "--data", str(data)]),
    }[prog]
    assert main(argv) == 2
    err = _one_line_error(capsys, prog)
    assert "TensorRT is not installed" in err and "pip install" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "engines").exists()


def test_an_int8_onnx_is_reported_as_int8_everywhere(int8_onnx, small_video, tmp_path, capsys):
    """The precision reported is the artifact's own tag, on every command (was "f32" before)."""
    from rtseg.cli import eval as evaluate
    from rtseg.data.synth import write_synthetic_dataset

    js = tmp_path / "b.json"
    assert bench.main(["--onnx", str(int8_onnx), "--backend", "onnxruntime", "--source", "synthetic:160x120",
                       "--frames", "3", "--warmup", "1", "--json", str(js)]) == 0
    r = json.loads(js.read_text())["runs"][0]
    assert r["label"] == "onnxruntime int8" and r["backend"]["precision"] == "int8"
    assert "precision int8" in capsys.readouterr().out
    assert run.main([str(small_video), "--onnx", str(int8_onnx), "--backend", "onnxruntime", "--max-frames", "3",
                     "-o", str(tmp_path / "o.mp4")]) == 0
    assert "precision int8" in capsys.readouterr().out
    data = write_synthetic_dataset(tmp_path / "ds", splits={"val": 2}, size=(64, 96), num_classes=11)
    ej = tmp_path / "e.json"
    assert evaluate.main([str(int8_onnx), "--data", str(data), "--json", str(ej)]) == 0
    assert "via onnxruntime int8" in capsys.readouterr().out and json.loads(ej.read_text())["precision"] == "int8"


def _stage_rows(text: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("latency (ms)"))
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        rows.append(line.split()[0])
    return rows


def test_bench_and_run_report_the_same_stages_from_the_same_code(small_onnx, small_video, tmp_path, capsys):
    """rtseg-bench's end-to-end run is the app's pipeline with a result sink, like rtseg-run."""
    assert run.main([str(small_video), "--onnx", str(small_onnx), "--backend", "onnxruntime",
                     "-o", str(tmp_path / "o.mp4")]) == 0
    run_rows = _stage_rows(capsys.readouterr().out)
    js = tmp_path / "b.json"
    assert bench.main(["--onnx", str(small_onnx), "--backend", "onnxruntime", "--source", str(small_video),
                       "--frames", "50", "--warmup", "2", "--json", str(js)]) == 0  # the 40-frame clip loops
    out = capsys.readouterr().out
    bench_rows = _stage_rows(out)
    assert run_rows == bench_rows == ["decode", "queue", "preprocess", "infer", "smoothing", "postprocess",
                                      "end_to_end"]
    r = json.loads(js.read_text())["runs"][0]
    assert list(r["stages"]) == bench_rows and r["frames"] == 50 and r["stages"]["infer"]["n"] == 50
    assert set(r["stages"]["infer"]) == {"n", "mean", "p50", "p90", "p95", "p99", "max"}
    assert r["infer_only"]["n"] == 50 and "infer_only" not in r["stages"]  # a separate, labelled figure
    assert "Inference only (back-to-back infer() on preloaded frames, not the pipeline)" in out
