"""Measure a backend two ways on the same frames.

1. Inference-only: ``backend.infer`` back to back on frames already decoded
   and resized (the ceiling the rest of the pipeline is judged against).
2. End-to-end: the pipelined path an application runs, three threads joined by
   one-slot blocking mailboxes (benchmark mode: nothing is dropped)::

       capture thread            inference thread           output thread
       decode + resize     ->    backend.infer        ->    colourise (LUT at model size)
                                                            + blend over the full frame

   Each stage overlaps the others, so throughput is set by the slowest stage
   while latency is the sum. Stage times and per-frame end-to-end latency
   (decode start -> overlay ready) are stamped on the way through.

Threading: ``run_backend`` is called from one thread (the CLI's main thread);
it starts and joins the capture and output threads itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from rtseg.benchmark.report import RunReport, StageStats
from rtseg.pipeline.mailbox import Mailbox
from rtseg.pipeline.overlay import blend, colorize, palette_lut
from rtseg.pipeline.sources import Source
from rtseg.runtime.base import Backend

SourceFactory = Callable[[], Source]


@dataclass
class _Item:
    images: list[np.ndarray]  # full-size frames of the batch
    batch: np.ndarray  # uint8 [N, h, w, 3] at model size
    t0: float  # decode start of the first frame in the batch
    decode_s: float
    preprocess_s: float
    infer_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    labels: np.ndarray | None = None


def _read_looping(source: Source, make_source: SourceFactory) -> tuple[Source, np.ndarray, float]:
    """Next frame, reopening a finite source at its end (so short clips serve long runs)."""
    t0 = time.perf_counter()
    frame = source.read()
    if frame is None:
        source.close()
        source = make_source()
        t0 = time.perf_counter()
        frame = source.read()
        if frame is None:
            raise RuntimeError("the source delivered no frame after reopening")
    return source, frame.image, t0


def preload(make_source: SourceFactory, n: int, size: tuple[int, int]) -> np.ndarray:
    """Up to ``n`` distinct frames of the source, resized to the model input (for inference-only)."""
    h, w = size
    out = []
    src = make_source()
    try:
        for _ in range(n):
            frame = src.read()
            if frame is None:
                break
            out.append(cv2.resize(frame.image, (w, h), interpolation=cv2.INTER_LINEAR))
    finally:
        src.close()
    if not out:
        raise RuntimeError("the source delivered no frame")
    return np.stack(out)


def measure_inference_only(backend: Backend, frames: np.ndarray, warmup: int, iters: int) -> tuple[float, list[float]]:
    """(FPS, per-call seconds) of back-to-back ``infer`` over preloaded frames."""
    n = backend.input_shape[0]
    batches = [frames[(i * n + np.arange(n)) % len(frames)] for i in range(max(1, min(len(frames), 16)))]
    for i in range(warmup):
        backend.infer(batches[i % len(batches)])
    times = []
    t_start = time.perf_counter()
    for i in range(iters):
        t = time.perf_counter()
        backend.infer(batches[i % len(batches)])
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - t_start
    return iters * n / wall, times


def measure_end_to_end(backend: Backend, make_source: SourceFactory, warmup: int, iters: int,
                       alpha: float = 0.5) -> tuple[float, dict[str, list[float]]]:
    """(FPS, per-stage seconds) of the three-thread pipelined run over ``warmup + iters`` batches."""
    n, h, w = backend.input_shape
    lut = palette_lut(backend.meta.palette)
    total = warmup + iters
    to_infer: Mailbox[_Item] = Mailbox(blocking=True)
    to_output: Mailbox[_Item] = Mailbox(blocking=True)
    done_times: list[float] = []
    samples: dict[str, list[float]] = {k: [] for k in ("decode", "preprocess", "infer", "postprocess", "end_to_end")}
    errors: list[BaseException] = []

    def capture() -> None:  # capture thread: decode + resize
        try:
            src = make_source()
            try:
                for _ in range(total):
                    images, small, dec = [], [], 0.0
                    t_first: float | None = None
                    pre = 0.0
                    for _ in range(n):
                        src, image, t0 = _read_looping(src, make_source)
                        t1 = time.perf_counter()
                        t_first = t0 if t_first is None else t_first
                        dec += t1 - t0
                        small.append(cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR))
                        pre += time.perf_counter() - t1
                        images.append(image)
                    batch = small[0][None] if n == 1 else np.stack(small)
                    assert t_first is not None  # n >= 1 frames were read
                    if not to_infer.put(_Item(images, batch, t_first, dec, pre)):
                        return
            finally:
                src.close()
        except BaseException as exc:  # reported to the caller, never lost in a thread
            errors.append(exc)
            to_infer.close()
            to_output.close()

    def output() -> None:  # output thread: colourise at model size, blend at frame size
        try:
            for _ in range(total):
                item = to_output.take()
                if item is None:
                    return
                t = time.perf_counter()
                assert item.labels is not None
                for image, labels in zip(item.images, item.labels, strict=True):
                    blend(image, colorize(labels, lut), alpha)
                t_end = time.perf_counter()
                done_times.append(t_end)
                if len(done_times) > warmup:
                    samples["decode"].append(item.decode_s)
                    samples["preprocess"].append(item.preprocess_s)
                    samples["infer"].append(item.infer_s)
                    samples["postprocess"].append(t_end - t)
                    samples["end_to_end"].append(t_end - item.t0)
                    for k, v in item.timings.items():
                        samples.setdefault(k, []).append(v)
        except BaseException as exc:
            errors.append(exc)
            to_infer.close()

    threads = [threading.Thread(target=capture, name="bench-capture", daemon=True),
               threading.Thread(target=output, name="bench-output", daemon=True)]
    for t in threads:
        t.start()
    try:
        # inference stage runs here, on the thread that owns the backend
        for _ in range(total):
            item = to_infer.take()
            if item is None:
                break
            t_start = time.perf_counter()
            item.labels = backend.infer(item.batch)
            item.infer_s = time.perf_counter() - t_start
            item.timings = dict(getattr(backend, "last_timings", None) or {})
            if not to_output.put(item):
                break
    finally:
        for t in threads:
            t.join(timeout=30)
        to_infer.close()
        to_output.close()
    if errors:
        raise errors[0]
    if len(done_times) < total:
        raise RuntimeError(f"end-to-end run finished only {len(done_times)} of {total} batches")
    wall = done_times[-1] - done_times[warmup - 1] if warmup else done_times[-1] - done_times[0]
    fps = (iters if warmup else iters - 1) * n / wall
    return fps, samples


def run_backend(label: str, backend: Backend, make_source: SourceFactory, *, warmup: int, frames: int) -> RunReport:
    """Activate ``backend``, measure it both ways, deactivate, and return the report."""
    with backend:
        n, h, w = backend.input_shape
        iters = max(1, frames // n)
        pre = preload(make_source, 32, (h, w))
        infer_fps, infer_times = measure_inference_only(backend, pre, warmup=max(1, warmup // n), iters=iters)
        e2e_fps, samples = measure_end_to_end(backend, make_source, warmup=max(1, warmup // n), iters=iters)
        info = backend.info()
    stages = {k: StageStats.of(v) for k, v in samples.items() if v}
    stages["infer_only"] = StageStats.of(infer_times)
    return RunReport(label=label, backend=asdict(info), frames=iters * n, warmup=warmup,
                     e2e_fps=e2e_fps, infer_only_fps=infer_fps, stages=stages)
