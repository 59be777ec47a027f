"""``rtseg`` / ``python -m rtseg``: the GUI with a display, the headless job without one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import pytest

from rtseg.cli.app import has_display, main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("env", "platform", "expected"), [
    ({}, "linux", False),
    ({"DISPLAY": ":0"}, "linux", True),
    ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", True),
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", False),
    ({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":99"}, "linux", True),
    ({}, "win32", True),
    ({}, "darwin", True),
])
def test_has_display(env: dict[str, str], platform: str, expected: bool) -> None:
    assert has_display(env, platform) is expected


def _no_display_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["RTSEG_SETTINGS"] = "/nonexistent/never-used.ini"  # headless must not touch settings
    return env


def test_python_m_rtseg_without_display_runs_headless(tmp_path: Path, small_video: Path, small_onnx: Path) -> None:
    out = tmp_path / "overlay.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "rtseg", str(small_video), "--onnx", str(small_onnx), "--backend", "onnxruntime",
         "--threads", "1", "-o", str(out)],
        cwd=REPO, env=_no_display_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "running headless" in proc.stderr
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    cap.release()


def test_bad_source_is_one_line_and_non_zero(tmp_path: Path, capsys) -> None:
    code = main(["--headless", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and err.count("\n") == 0 and "missing.mp4" in err
    assert not list(tmp_path.iterdir())


def test_rtseg_opens_the_window_and_plays_at_once(tmp_path: Path, small_video: Path, small_onnx: Path) -> None:
    """The console entry with a source and an ONNX model: the window shows, frames play, and torch is
    never imported (the ONNX path needs no framework but the backend's own, loaded on the inference thread)."""
    driver = textwrap.dedent("""
        import sys, time
        from PyQt6.QtCore import QTimer
        from PyQt6.QtWidgets import QApplication
        from rtseg.gui.app import application
        from rtseg.gui.main_window import MainWindow
        app = application()
        state = {"t0": time.perf_counter(), "shown_at": None}
        def poll():
            wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
            if wins and state["shown_at"] is None:
                state["shown_at"] = time.perf_counter() - state["t0"]
                state["torch_at_show"] = "torch" in sys.modules
            if wins and wins[0].results_received >= 3:
                print("RESULTS", wins[0].results_received, "SHOWN", state["shown_at"],
                      "TORCH_AT_SHOW", state["torch_at_show"], flush=True)
                wins[0].close()
                return
            if time.perf_counter() - state["t0"] > 120:
                print("TIMEOUT", flush=True)
                for w in wins:
                    w.close()
                return
            QTimer.singleShot(20, poll)
        QTimer.singleShot(0, poll)
        from rtseg.cli.app import main
        code = main(sys.argv[1:])
        print("EXIT", code, "TORCH", "torch" in sys.modules, flush=True)
        sys.exit(code)
    """)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [sys.executable, "-c", driver, str(small_video), "--onnx", str(small_onnx), "--backend", "onnxruntime",
         "--threads", "1", "--settings", str(tmp_path / "s.ini"), "--save-dir", str(tmp_path / "out")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RESULTS" in proc.stdout and "TIMEOUT" not in proc.stdout, proc.stdout + proc.stderr
    assert "TORCH_AT_SHOW False" in proc.stdout
    assert "EXIT 0 TORCH False" in proc.stdout
    assert (tmp_path / "s.ini").is_file()  # settings went to the file given, not the user's


def test_cli_app_import_stays_cheap_and_help_works() -> None:
    code = ("import sys, rtseg.cli.app\n"
            "bad = [m for m in ('torch', 'PyQt6', 'onnxruntime', 'openvino', 'tensorrt', 'cv2') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    proc = subprocess.run([sys.executable, "-m", "rtseg", "--help"], cwd=REPO, capture_output=True, text=True,
                          env=_no_display_env(), timeout=60)
    assert proc.returncode == 0 and "usage: rtseg" in proc.stdout and "--headless" in proc.stdout
