#!/usr/bin/env bash
# The automatic CPU choice against plain OpenVINO f32, on the bundled model and the sample clip,
# in one session (issue 17's target: auto >= 3x the end-to-end FPS of openvino f32).
#   scripts/bench_cpu_auto.sh [FRAMES]        (run on a quiet machine; takes a few minutes)
# The first rtseg-bench re-measures the automatic choice (--autotune), so a stale cached
# decision cannot decide the result; it prints the "auto: ..." line with the choice and why.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
CLIP=${CLIP:-assets/camvid_0016E5_val.mp4}
FRAMES=${1:-200}
OUT=${OUT:-out/bench_cpu_auto}
mkdir -p "$OUT"
echo "== rtseg-bench, no backend/precision flags (auto) =="
"$BIN/rtseg-bench" --source "$CLIP" --frames "$FRAMES" --autotune --json "$OUT/auto.json"
echo "== rtseg-bench --backend openvino --precision f32 =="
"$BIN/rtseg-bench" --source "$CLIP" --frames "$FRAMES" --backend openvino --precision f32 --json "$OUT/ov_f32.json"
"$BIN/python" - "$OUT/auto.json" "$OUT/ov_f32.json" <<'PY'
import json, sys
def fps(path):
    run = json.load(open(path))["runs"][0]
    return run["label"], run["e2e_fps"]
(a_label, a), (b_label, b) = fps(sys.argv[1]), fps(sys.argv[2])
print(f"end-to-end: auto ({a_label}) {a:.1f} FPS, openvino f32 ({b_label}) {b:.1f} FPS: {a / b:.2f}x")
PY
