"""Soak test: the headless live pipeline on a looping clip for a long time; memory and frame age must not grow.

    .venv/bin/python scripts/soak.py --minutes 30 [--source CLIP] [--backend openvino]
        [--onnx FILE | --model NAME --input-size HxW] [--csv out/soak.csv] [--interval 5]

The pipeline plays the clip in realtime mode, looping, with a real model (default:
the bundled one, else a random STDC1 at 360x480). The main thread plays the
display's part: it takes every result, composes the overlay at frame size the
way the GUI and the recorder do, and reports it displayed (``note_displayed``),
so frame age covers capture -> shown. Every ``--interval`` seconds it samples
the process RSS (psutil) and the frame age, prints a line and appends a CSV row.

At the end it compares the first and last quarter of the run (after a warm-up
of 10% of it, at least 20 s, so model compilation and allocator warm-up do not
count as growth): pass when RSS grew less than ``--max-rss-growth-mb`` (50 MB)
and the median frame age grew less than ``--max-age-growth-ms`` (20 ms).
Exit code 0 = pass, 1 = fail, 2 = the pipeline failed.
"""

from __future__ import annotations

import argparse
import csv
import queue
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIELDS = ("t_s", "rss_mb", "captured", "results", "displayed", "dropped", "capture_fps", "inference_fps",
          "latency_p50_ms", "frame_age_p50_ms", "frame_age_p95_ms", "threads")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    p.add_argument("--source", default=None, help="clip to loop (default: the bundled sample)")
    p.add_argument("--backend", default="openvino")
    p.add_argument("--precision", default="f32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--onnx", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--weights", default=None)
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--input-size", default=None)
    p.add_argument("--csv", default="out/soak.csv")
    p.add_argument("--max-rss-growth-mb", type=float, default=50.0)
    p.add_argument("--max-age-growth-ms", type=float, default=20.0)
    args = p.parse_args()

    import threading

    import psutil

    from rtseg.core.atomic import atomic_path
    from rtseg.gui.compose import LutCache, OverlayStyle, compose
    from rtseg.pipeline.worker import Pipeline
    from rtseg.resolve.backend import resolve
    from rtseg.resolve.model import SAMPLE_CLIP, resolve_model

    source = args.source or str(SAMPLE_CLIP)
    choice = resolve_model(args)
    factory = resolve(choice, args.backend, args.precision, threads=args.threads, report=print).factory
    results: queue.Queue = queue.Queue(maxsize=4)
    errors: list[str] = []

    def on_result(r):  # inference thread: hand over, never wait (the display would drop a stale one too)
        try:
            results.put_nowait(r)
        except queue.Full:
            pass

    pipe = Pipeline(on_result=on_result, on_error=lambda e: errors.append(str(e)))
    proc = psutil.Process()
    luts = LutCache()
    style = OverlayStyle(opacity=0.5)
    duration = args.minutes * 60.0
    rows: list[dict[str, float]] = []
    print(f"soak: {source} with {choice.describe()} on {args.backend}, {args.minutes:g} min, "
          f"sample every {args.interval:g} s -> {args.csv}", flush=True)
    with atomic_path(args.csv) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        pipe.start(source, factory, mode="realtime", loop=True)
        t0 = time.perf_counter()
        next_sample = t0 + args.interval
        try:
            while True:
                now = time.perf_counter()
                if errors:
                    print(f"soak: pipeline error: {errors[0]}", file=sys.stderr)
                    return 2
                if now >= next_sample:
                    s = pipe.stats.snapshot()
                    row = {"t_s": now - t0, "rss_mb": proc.memory_info().rss / 2**20, "captured": s.captured,
                           "results": s.results, "displayed": s.displayed, "dropped": s.dropped,
                           "capture_fps": s.capture_fps, "inference_fps": s.inference_fps,
                           "latency_p50_ms": s.latency.p50, "frame_age_p50_ms": s.frame_age.p50,
                           "frame_age_p95_ms": s.frame_age.p95, "threads": threading.active_count()}
                    rows.append(row)
                    writer.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in row.items()})
                    fh.flush()
                    print(f"  {row['t_s']:7.0f} s  RSS {row['rss_mb']:7.1f} MB  infer {s.inference_fps:5.1f} fps  "
                          f"age p50 {s.frame_age.p50:6.1f} ms  displayed {s.displayed}  dropped {s.dropped}",
                          flush=True)
                    next_sample += args.interval
                    if now - t0 >= duration:
                        break
                try:
                    r = results.get(timeout=max(0.0, min(0.2, next_sample - time.perf_counter())))
                except queue.Empty:
                    continue
                # what the display does per shown frame: colourise at model size, scale, blend
                compose(r.frame.image, r.labels, luts.get(r.meta.palette, None), style)
                pipe.stats.note_displayed(r)
        finally:
            ok = pipe.stop()
    if not ok:
        print("soak: the pipeline did not stop within 1 s", file=sys.stderr)
    return verdict(rows, duration, args.max_rss_growth_mb, args.max_age_growth_ms)


def verdict(rows: list[dict[str, float]], duration: float, max_rss: float, max_age: float) -> int:
    warm = max(20.0, 0.1 * duration)
    steady = [r for r in rows if r["t_s"] >= warm and not np.isnan(r["frame_age_p50_ms"])]
    if len(steady) < 4:
        print("soak: too few samples after warm-up to judge; run longer (--minutes)", file=sys.stderr)
        return 2
    q = max(1, len(steady) // 4)
    first, last = steady[:q], steady[-q:]

    def med(rs, key):
        return float(np.median([r[key] for r in rs]))

    rss_growth = med(last, "rss_mb") - med(first, "rss_mb")
    age_growth = med(last, "frame_age_p50_ms") - med(first, "frame_age_p50_ms")
    rss_max = max(r["rss_mb"] for r in steady) - steady[0]["rss_mb"]
    ok = rss_growth < max_rss and age_growth < max_age
    print(f"RSS growth (median last quarter - first quarter after {warm:.0f} s warm-up): {rss_growth:+.1f} MB "
          f"(peak {rss_max:+.1f} MB; limit {max_rss:.0f} MB)")
    print(f"frame age p50 growth: {age_growth:+.1f} ms (first quarter {med(first, 'frame_age_p50_ms'):.1f} ms, "
          f"last {med(last, 'frame_age_p50_ms'):.1f} ms; limit {max_age:.0f} ms)")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
