"""Measure the CPU benchmark table of docs/benchmarks.md.

    .venv/bin/python scripts/bench_matrix.py [--frames 60] [--warmup 10] [--out out/bench]

For every zoo model at 360x480 and 512x1024 it runs
``rtseg-bench --compare onnxruntime,openvino:f32,openvino:bf16,torch`` on a 720p
clip (the bundled CamVid sample upscaled to 1280x720, written to out/), saves
each JSON report, and prints a markdown table (paste it into docs/benchmarks.md
with the command line and the host line).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
MODELS = ["stdc1", "stdc2", "bisenetv1", "bisenetv2"]
SIZES = ["360x480", "512x1024"]
BACKENDS = "onnxruntime,openvino:f32,openvino:bf16,torch"


def make_720p(src: Path, dst: Path) -> Path:
    """The sample clip upscaled to 1280x720 (mp4v), so decode costs what a 720p file costs."""
    if dst.is_file():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    tmp = dst.with_name(".tmp_" + dst.name)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1280, 720))
    while True:
        ok, img = cap.read()
        if not ok:
            break
        writer.write(cv2.resize(img, (1280, 720), interpolation=cv2.INTER_LINEAR))
    writer.release()
    cap.release()
    tmp.rename(dst)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--compare", default=BACKENDS)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clip = make_720p(REPO / "assets" / "camvid_0016E5_val.mp4", out / "camvid_720p.mp4")
    rows = []
    for model in args.models.split(","):
        for size in args.sizes.split(","):
            js = out / f"{model}_{size}.json"
            cmd = [str(REPO / ".venv" / "bin" / "rtseg-bench"), "--model", model, "--input-size", size,
                   "--compare", args.compare, "--source", str(clip), "--frames", str(args.frames),
                   "--warmup", str(args.warmup), "--json", str(js)]
            print(" ".join(cmd), file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            rep = json.loads(js.read_text())
            for r in rep["runs"]:
                st = r["stages"]
                rows.append((model, size, r["label"], r["backend"]["precision"], r["infer_only_fps"], r["e2e_fps"],
                             r["e2e_over_infer"], st["infer"]["p50"], st["infer"]["p99"],
                             st["end_to_end"]["p50"], st["end_to_end"]["p99"]))
    print("| model | input | backend | precision | infer-only FPS | end-to-end FPS | e2e/infer | infer p50 / p99 ms | e2e latency p50 / p99 ms |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for m, s, lab, prec, fi, fe, ratio, i50, i99, e50, e99 in rows:
        print(f"| {m} | {s} | {lab.split()[0]} | {prec} | {fi:.1f} | {fe:.1f} | {ratio:.2f} | {i50:.1f} / {i99:.1f} | {e50:.1f} / {e99:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
