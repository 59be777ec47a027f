"""OpenVINO's LATENCY hint (one stream over all cores) vs THROUGHPUT (one stream per core), two
requests in flight, on the default model's INT8 artifact with bf16 float layers: the next lever
for issue 17's end-to-end target (docs/benchmarks.md).

    .venv/bin/python scripts/ov_streams.py [ONNX]
"""

from __future__ import annotations

import sys
import time

import openvino as ov

from rtseg.resolve.autotune import tuning_frames

path = sys.argv[1] if len(sys.argv) > 1 else "assets/stdc_efflite0_camvid_int8.onnx"
frames = tuning_frames((360, 480), 8)
core = ov.Core()
for hint in ({"PERFORMANCE_HINT": "LATENCY"}, {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2"}):
    compiled = core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "bf16", **hint})
    queue = ov.AsyncInferQueue(compiled, 2)
    for i in range(10):  # warm-up
        queue.start_async({0: frames[i % len(frames)][None]})
    queue.wait_all()
    n = 200
    t = time.perf_counter()
    for i in range(n):
        queue.start_async({0: frames[i % len(frames)][None]})
    queue.wait_all()
    print(f"{hint}: {compiled.get_property('NUM_STREAMS')} stream(s), {n / (time.perf_counter() - t):.1f} FPS "
          "with 2 requests in flight")
