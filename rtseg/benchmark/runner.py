"""Measure a backend two ways on the same source.

1. Inference-only: ``backend.infer`` back to back (or several in flight, for a
   backend that overlaps) on frames already decoded and resized (the ceiling
   the rest of the pipeline is judged against). A separate, labelled figure:
   it is not a stage of the pipeline.
2. End-to-end: the app's own ``Pipeline`` in benchmark mode (nothing is
   dropped; a short file loops) with a result sink, through
   ``rtseg.pipeline.headless.run_headless`` - the code ``rtseg-run`` runs::

       capture thread        inference thread                          this thread (the sink)
       decode          ->    resize, backend submit/collect, smoothing ->  colourise + blend

   so the stages reported (decode, queue, preprocess, infer, smoothing,
   postprocess, end_to_end, and h2d/compute/d2h on CUDA) are the ones a user
   of the app gets, measured the same way.

The two can be interleaved in rounds (``rtseg-bench --rounds``), so that their
ratio holds on a machine whose speed drifts while it is measured.

Threading: ``run_backend`` is called from one thread (the CLI's main thread),
which owns the inference-only backend; the pipeline creates and owns its own
backend from the same factory on its inference thread.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from rtseg.benchmark.report import RunReport
from rtseg.core.errors import UserInputError
from rtseg.core.frames import Result, resize_to_model
from rtseg.pipeline.headless import run_headless
from rtseg.pipeline.overlay import blend, colorize, palette_lut
from rtseg.pipeline.sources import open_source
from rtseg.pipeline.stats import Dist, StageSamples
from rtseg.runtime.base import Backend

#: A synthetic scene is rendered once per frame of its period, then replayed, so
#: rendering never limits the measured pipeline.
SYNTHETIC_PERIOD = 24


def preload(source: str, n: int, size: tuple[int, int]) -> np.ndarray:
    """Up to ``n`` distinct frames of the source, resized to the model input (for inference-only)."""
    out = []
    with open_source(source, period=SYNTHETIC_PERIOD) as src:
        for _ in range(n):
            frame = src.read()
            if frame is None:
                break
            out.append(resize_to_model(frame.image, size))
    if not out:
        raise UserInputError(f"source {source} delivered no frame")
    return np.stack(out)


def measure_inference_only(backend: Backend, frames: np.ndarray, warmup: int, iters: int) -> tuple[float, list[float]]:
    """(FPS, per-frame seconds) over preloaded frames (active backend): back-to-back ``infer``, or,
    for a backend that overlaps (``max_in_flight`` > 1), that many batches kept in flight with
    ``submit``/``collect``, the engine's own ceiling (the seconds are then each batch's submit to
    labels, which is longer than the interval between results).

    In flight, the FPS is counted by the end-to-end figure's rule (``run_headless``: from the
    last warm-up result to the last result): the clock starts at the first result, with the
    queue full, and stops at the ``iters``-th after it; the queue is refilled after every
    result and drained after the clock stops. Timing from an idle engine through the drain
    counted a ramp-up and a tail that the end-to-end figure does not, on rounds of a few dozen
    frames, so the ratio of the two was not like for like.
    """
    n = backend.input_shape[0]
    batches = [frames[(i * n + np.arange(n)) % len(frames)] for i in range(max(1, min(len(frames), 16)))]
    for i in range(warmup):
        backend.infer(batches[i % len(batches)])
    depth = backend.max_in_flight
    times = []
    if depth <= 1:
        t_start = time.perf_counter()
        for i in range(iters):
            t = time.perf_counter()
            backend.infer(batches[i % len(batches)])
            times.append(time.perf_counter() - t)
        wall = time.perf_counter() - t_start
        return iters * n / wall, times
    started: deque[float] = deque()
    submitted = 0

    def submit() -> None:
        nonlocal submitted
        started.append(time.perf_counter())
        backend.submit(batches[submitted % len(batches)])
        submitted += 1

    for _ in range(depth):
        submit()
    backend.collect()  # the first result: the engine is busy and the queue full from here on
    started.popleft()
    submit()
    t_start = time.perf_counter()
    for _ in range(iters):
        backend.collect()
        times.append(time.perf_counter() - started.popleft())
        submit()
    wall = time.perf_counter() - t_start
    while started:  # drain, outside the clock, so the backend is left with nothing in flight
        backend.collect()
        started.popleft()
    return iters * n / wall, times


def overlay_sink(alpha: float = 0.5) -> Callable[[Result], None]:
    """The benchmark's result sink: colourise at model size (palette LUT) and blend over the frame,
    what a viewer does with every result (without encoding a file)."""
    luts: dict[int, Any] = {}

    def consume(r: Result) -> None:
        lut = luts.get(id(r.meta))
        if lut is None:
            lut = luts[id(r.meta)] = palette_lut(r.meta.palette)
        blend(r.frame.image, colorize(r.labels, lut), alpha)

    return consume


def split_rounds(total: int, rounds: int) -> list[int]:
    """``total`` frames as ``rounds`` near-equal parts (the first ones one larger), none empty."""
    rounds = max(1, min(rounds, total))
    base, extra = divmod(total, rounds)
    return [base + (1 if i < extra else 0) for i in range(rounds)]


def run_backend(label: str, factory: Callable[[], Backend], source: str, *, warmup: int, frames: int,
                alpha: float = 0.5, rounds: int = 1) -> RunReport:
    """Measure ``factory``'s backend inference-only and end to end on the app's pipeline.

    ``rounds`` > 1 interleaves the two: the frames are split into that many
    parts and each part is measured inference-only, then end to end (a new
    pipeline each round, each with its own warm-up), so a machine whose speed
    drifts over seconds (a shared VM) weighs on both figures alike and their
    ratio stays meaningful. The figures are totals over the rounds (frames /
    summed measured wall time), the latency table covers every round.
    """
    with factory() as backend:
        n, h, w = backend.input_shape
        iters = max(1, frames // n)
        pre = preload(source, 32, (h, w))
        info = backend.info()
        m = backend.meta
        model = {"name": m.model, "num_classes": m.num_classes, "input_size": f"{h}x{w}", "batch": n,
                 "trained": m.trained, "weights": m.weights}
        if n != 1:
            batch_fps, batch_times = measure_inference_only(backend, pre, warmup=max(1, warmup // n), iters=iters)
            return RunReport(label, asdict(info), iters * n, warmup, float("nan"), batch_fps, Dist.of(batch_times),
                             note=f"end to end not measured: the live pipeline runs batch 1 and this artifact "
                                  f"takes batch {n}", model=model)
        parts = split_rounds(frames, rounds)
        samples = StageSamples()
        infer_times: list[float] = []
        infer_wall = e2e_wall = e2e_intervals = 0.0
        round_ratios: list[float] = []
        e2e_results = dropped = 0
        clean = True
        ran = asdict(info)
        for k, part in enumerate(parts):
            # the first round warms the inference-only backend; it stays warm between rounds
            fps_k, times = measure_inference_only(backend, pre, warmup=max(1, warmup) if k == 0 else 1, iters=part)
            infer_wall += part / fps_k
            infer_times += times
            rep = run_headless(source, factory, overlay_sink(alpha), mode="benchmark", loop=True,
                               warmup=max(1, warmup), max_results=part, period=SYNTHETIC_PERIOD, samples=samples)
            e2e_wall += rep.wall_s
            e2e_results += rep.results
            e2e_intervals += rep.fps * rep.wall_s if rep.wall_s > 0 else 0.0  # run_headless's own count
            round_ratios.append(rep.fps / fps_k if fps_k > 0 else float("nan"))
            dropped += rep.dropped
            clean = clean and rep.stopped_cleanly
            # The pipeline's backend reports what really ran there (e.g. OpenVINO's compiled precision).
            if rep.backend is not None:
                ran = asdict(rep.backend)
    infer_fps = sum(parts) / infer_wall if infer_wall > 0 else float("nan")
    e2e_fps = e2e_intervals / e2e_wall if e2e_wall > 0 else float("nan")
    return RunReport(label, ran, e2e_results, warmup, e2e_fps, infer_fps, Dist.of(infer_times), samples.summary(),
                     dropped, None if clean else "the pipeline did not stop within its timeout", model,
                     rounds=len(parts), round_ratios=round_ratios)
