"""OpenVINO's LATENCY hint (one stream over all cores) vs THROUGHPUT (two streams), with two or three
requests in flight, on the default model's INT8 artifact with bf16 float layers: the measurement
behind ``OpenVinoBackend(streams=2, requests=3)``, what ``--backend auto`` may choose in benchmark
mode (docs/benchmarks.md).

Each setting runs twice: bare (inference only), and with the work the pipeline does per frame
between one collect and the next submit (colourise with the palette LUT, blend, resize the next
frame: about 3 ms here), which is where a third queued request keeps both streams busy.

    .venv/bin/python scripts/ov_streams.py [ONNX] [FRAMES]
"""

from __future__ import annotations

import sys
import time
from collections import deque

import cv2
import numpy as np
import openvino as ov

from rtseg.resolve.autotune import tuning_frames

path = sys.argv[1] if len(sys.argv) > 1 else "assets/stdc_efflite0_camvid_int8.onnx"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
frames = tuning_frames((360, 480), 8)
lut = np.random.default_rng(0).integers(0, 255, (256, 3), dtype=np.uint8)


def pipeline_work(labels: np.ndarray, image: np.ndarray) -> None:
    cv2.addWeighted(image, 0.5, lut[labels[0]], 0.5, 0.0)
    cv2.resize(image, (480, 360), interpolation=cv2.INTER_LINEAR)


core = ov.Core()
for hint, requests in (("LATENCY", 2), ("THROUGHPUT", 2), ("THROUGHPUT", 3)):
    config = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": hint}
    if hint == "THROUGHPUT":
        config["NUM_STREAMS"] = 2
    compiled = core.compile_model(path, "CPU", config)
    reqs = [compiled.create_infer_request() for _ in range(requests)]
    for work in (False, True):
        pending: deque = deque()
        for i in range(10 + n):  # 10 warm-up frames
            if i == 10:
                while pending:
                    pending.popleft().wait()
                t = time.perf_counter()
            if len(pending) == requests:
                done = pending.popleft()
                done.wait()
                if work:
                    pipeline_work(np.array(done.get_output_tensor(0).data), frames[i % len(frames)])
            req = reqs[i % requests]
            req.start_async({0: frames[i % len(frames)][None]}, share_inputs=False)
            pending.append(req)
        while pending:
            pending.popleft().wait()
        fps = n / (time.perf_counter() - t)
        print(f"{hint:<10} {compiled.get_property('NUM_STREAMS')} stream(s), {requests} requests in flight, "
              f"{'with' if work else 'without'} pipeline work: {fps:.1f} FPS")
