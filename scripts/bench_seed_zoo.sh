#!/bin/sh
# Latency of every zoo model at 360x480 on OpenVINO f32 and bf16, and the cost of CRF refinement
# on the bundled model; the figures in docs/zoo.md come from this script (then
# `.venv/bin/python scripts/zoo_table.py OUT` writes the table).
#
#   nice -n 10 sh scripts/bench_seed_zoo.sh out/zoo_bench
#
# Seeded random weights (speed does not depend on them); the heavy VGG/ResNet models get few
# frames (each takes seconds here). Every run's report is in OUT/<name>.txt and .json, and the
# exported ONNX files are removed afterwards (the VGG ones are 0.5-1 GB).
set -eu
OUT=${1:-out/zoo_bench}
ENG="$OUT/engines"
mkdir -p "$OUT" "$ENG"
BENCH=".venv/bin/rtseg-bench"

run() {  # name classes frames [extra rtseg-bench args]
    name=$1 classes=$2 frames=$3
    shift 3
    onnx="$ENG/$name.onnx"
    .venv/bin/rtseg-export --model "$name" --num-classes "$classes" --input-size 360x480 --no-verify \
        -o "$onnx" "$@" > "$OUT/$name.export.txt" 2>&1
    $BENCH --onnx "$onnx" --compare openvino:f32,openvino:bf16 --source synthetic:480x360 \
        --frames "$frames" --warmup 2 --json "$OUT/$name.json" > "$OUT/$name.txt" 2>&1
    rm -f "$onnx"
    echo "$name done"
}

# the bundled model with and without CRF refinement (same frames: the bundled CamVid sample)
.venv/bin/rtseg-export --weights assets/stdc_efflite0_camvid.pt --input-size 360x480 -o "$ENG/default.onnx" \
    > "$OUT/default.export.txt" 2>&1
.venv/bin/rtseg-export --weights assets/stdc_efflite0_camvid.pt --input-size 360x480 --refine crf -o "$ENG/default_crf.onnx" \
    > "$OUT/default_crf.export.txt" 2>&1
for v in default default_crf; do
    $BENCH --onnx "$ENG/$v.onnx" --compare openvino:f32,openvino:bf16 --source assets/camvid_0016E5_val.mp4 \
        --frames 60 --warmup 5 --json "$OUT/$v.json" > "$OUT/$v.txt" 2>&1
    echo "$v done"
done
rm -f "$ENG/default.onnx" "$ENG/default_crf.onnx"

run stdc1 11 30
run stdc2 11 20
run bisenetv1 11 30
run bisenetv2 11 30
run stdc_efflite0 11 30
run stdc_efflite1 11 30
run stdc_efflite2 11 30
run lraspp_mobilenet_v3_large 21 40
run deeplabv3_mobilenet_v3_large 21 20
run segnet_basic 11 20
run segnet 11 3
run fcn8s 11 3
run fcn16s 11 3
run fcn32s 11 3
run deeplabv3_resnet50 21 3
run fcn_resnet50 21 3
run dilation8 11 2
run deconvnet 11 2
run deeplabv3_resnet101 21 2
run fcn_resnet101 21 2
