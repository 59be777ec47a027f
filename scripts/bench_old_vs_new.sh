#!/usr/bin/env bash
# Speed of the previous default (STDC1 from scratch, assets/stdc1_camvid.pt, taken from git history)
# against the current one (assets/stdc_efflite0_camvid.pt), one session, same clip, OpenVINO at
# f32 and at bf16, precision set explicitly (issue 14: the new default must be no slower).
#   scripts/bench_old_vs_new.sh [FRAMES]      (quiet machine; a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
FRAMES=${1:-200}
OUT=${OUT:-out/bench_old_vs_new}
mkdir -p "$OUT"
OLD="$OUT/stdc1_camvid.pt"
git show ebd172b^:assets/stdc1_camvid.pt > "$OLD.tmp" && mv "$OLD.tmp" "$OLD"
for m in "$OLD" assets/stdc_efflite0_camvid.pt; do
    name=$(basename "$m" .pt)
    "$BIN/rtseg-bench" --weights "$m" --source assets/camvid_0016E5_val.mp4 --frames "$FRAMES" \
        --compare openvino:f32,openvino:bf16 --json "$OUT/$name.json" > "$OUT/$name.txt" 2>&1
    grep -E "^Command|^---|^Throughput|^Inference only" "$OUT/$name.txt"
done
