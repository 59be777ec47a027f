"""GUI responsiveness under full load: event-loop latency while the pipeline runs flat out.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/gui_latency.py [--seconds 30] [--source SPEC]
        [--backend openvino] [--onnx FILE | --model NAME --input-size HxW] [--json out/gui_latency.json]
    xvfb-run -a .venv/bin/python scripts/gui_latency.py      # the same under a real X server

The real main window plays the source in pipeline mode "fast" (files read as
fast as the model takes them, looping) with a real model (default: the
bundled one, else a random STDC1 at 360x480) on OpenVINO. Meanwhile a
``PreciseTimer`` QTimer fires every ``--tick-ms`` (10 ms) on the GUI thread
and records how late each tick is: drift = (time since the previous tick) -
tick interval. A responsive GUI keeps the drift small because the GUI thread
only stores results, composes one picture per screen refresh and paints it;
inference, decoding and resizing happen on the pipeline's threads.

Prints p50/p95/p99/max drift in ms (target: p99 < 50 ms), the pipeline's and
the display's rates, and exits 1 when p99 misses ``--target-ms``.
Measurement starts only once frames are being displayed (after model load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="measurement length after warm-up (default 30)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of playback before measuring (default 3)")
    p.add_argument("--source", default=None, help="source spec (default: the bundled sample clip)")
    p.add_argument("--backend", default="openvino")
    p.add_argument("--precision", default="f32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--onnx", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--weights", default=None)
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--input-size", default=None)
    p.add_argument("--tick-ms", type=float, default=10.0)
    p.add_argument("--target-ms", type=float, default=50.0, help="p99 drift budget (default 50)")
    p.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = p.parse_args()

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PyQt6.QtCore import Qt, QTimer
    from PyQt6.QtWidgets import QApplication

    from rtseg.gui.main_window import MainWindow
    from rtseg.gui.model_picker import ModelRequest
    from rtseg.gui.settings import Settings
    from rtseg.resolve.model import SAMPLE_CLIP, resolve_model

    app = QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp(prefix="rtseg_gui_latency_"))
    win = MainWindow(Settings(tmp / "settings.ini"), output_dir=tmp, mode="fast", loop=True)
    win.resize(1400, 860)
    win.show()
    source = args.source or str(SAMPLE_CLIP)
    request = ModelRequest(resolve_model(args), args.backend, args.precision, args.threads)
    print(f"platform {QApplication.platformName()}, source {source}, model {request.describe()}", flush=True)
    t_launch = time.perf_counter()
    win.start(source, request)

    interval = args.tick_ms / 1000.0
    ticks: list[float] = []
    state: dict[str, Any] = {"phase": "loading", "t_measure": 0.0, "paints0": 0, "results0": 0}
    tick = QTimer()
    tick.setTimerType(Qt.TimerType.PreciseTimer)
    tick.setInterval(round(args.tick_ms))

    def on_tick() -> None:
        now = time.perf_counter()
        if state["phase"] == "loading":
            if win.view.paints > 0 and win.results_received > 0:
                state["phase"] = "warmup"
                state["t_warm"] = now
                print(f"first frame displayed {now - t_launch:.1f} s after start", flush=True)
            elif win.last_error:
                print(f"error: {win.last_error}", file=sys.stderr)
                app.exit(2)
            return
        if state["phase"] == "warmup":
            if now - state["t_warm"] >= args.warmup:
                state.update(phase="measure", t_measure=now, paints0=win.view.paints,
                             results0=win.results_received)
                ticks.append(now)
            return
        ticks.append(now)
        if now - state["t_measure"] >= args.seconds:
            app.exit(0)

    tick.timeout.connect(on_tick)
    tick.start()
    code = app.exec()
    snap = win.stats.snapshot()
    span = ticks[-1] - ticks[0] if len(ticks) > 1 else float("nan")
    paints = win.view.paints - state["paints0"]
    results = win.results_received - state["results0"]
    info = win.pipeline.backend_info
    win.close()
    if code != 0 or len(ticks) < 10:
        print("no measurement (the model or source failed, see above)", file=sys.stderr)
        return 2
    drift = (np.diff(np.asarray(ticks)) - interval) * 1e3
    p50, p95, p99 = (float(v) for v in np.percentile(drift, [50, 95, 99]))
    figures = {
        "platform": QApplication.platformName(), "source": source, "model": request.describe(),
        "backend": info.backend if info else args.backend, "device": info.device if info else "?",
        "cpu_count": os.cpu_count(), "seconds": span, "tick_ms": args.tick_ms, "ticks": len(drift),
        "drift_ms": {"p50": p50, "p95": p95, "p99": p99, "max": float(drift.max())},
        "inference_fps": results / span, "display_fps": paints / span,
        "latency_ms_p50": snap.latency.p50, "frame_age_ms_p50": snap.frame_age.p50,
        "dropped": snap.dropped,
    }
    print(f"event-loop drift over {span:.1f} s ({len(drift)} ticks of {args.tick_ms:.0f} ms): "
          f"p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms, max {drift.max():.2f} ms "
          f"(target p99 < {args.target_ms:.0f} ms)")
    print(f"meanwhile: inference {results / span:.1f} FPS, display {paints / span:.1f} FPS, "
          f"capture->result p50 {snap.latency.p50:.0f} ms, frame age p50 {snap.frame_age.p50:.0f} ms, "
          f"on {figures['backend']} {figures['device']}, {os.cpu_count()} CPUs")
    if args.json:
        from rtseg.core.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(figures, indent=2))
    return 0 if p99 < args.target_ms else 1


if __name__ == "__main__":
    raise SystemExit(main())
