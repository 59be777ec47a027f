"""Run the live pipeline to completion on the calling thread: what ``rtseg-run`` and
``rtseg-bench``'s end-to-end figure both are.

    rep = run_headless("clip.mp4", resolution.factory, consume=write_overlay, mode="benchmark")
    print(format_stage_table(rep.stages))

The app's own ``Pipeline`` (capture thread -> mailbox -> inference thread:
resize, backend, smoothing) feeds a ``ResultSink``; the calling thread is the
sink's consumer and runs ``consume(result)`` on every result (overlay and
encode for ``rtseg-run``, colourise and blend for the benchmark), which is
timed as the ``postprocess`` stage. Every stage comes from the stamps the
results carry, through ``StageSamples``, so both commands report the same
stages from the same code.

Threading: call from one thread; it starts and stops the pipeline's threads
itself and returns after both have been stopped (and the backend released).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rtseg.core.frames import Result
from rtseg.core.meta import ModelMeta
from rtseg.pipeline.callbacks import BackendFactory
from rtseg.pipeline.sink import ResultSink
from rtseg.pipeline.sources import Source
from rtseg.pipeline.stats import Dist, StageSamples
from rtseg.pipeline.worker import Pipeline
from rtseg.runtime.base import BackendInfo


@dataclass
class HeadlessReport:
    """What one headless run measured (the results after the warm-up ones)."""

    results: int  # measured results (warm-up excluded)
    warmup: int  # results consumed before measuring
    wall_s: float  # consumer wall time over the measured results
    fps: float  # measured results per second, as the consumer finished them
    stages: dict[str, Dist] = field(default_factory=dict)
    dropped: int = 0  # frames replaced in the mailbox unread (0 for a file in benchmark mode)
    backend: BackendInfo | None = None
    meta: ModelMeta | None = None
    source: str = ""
    stopped_cleanly: bool = True  # both threads ended within the stop timeout


def run_headless(source: str | int | Source, factory: BackendFactory,
                 consume: Callable[[Result], None] | None = None, *, mode: str = "benchmark", loop: bool = False,
                 max_results: int | None = None, warmup: int = 0, smoothing: int = 0, stop_timeout: float = 5.0,
                 capacity: int = 8, samples: StageSamples | None = None, **source_opts: Any) -> HeadlessReport:
    """Play ``source`` through the pipeline with ``factory``'s backend; consume every result here.

    Stops after ``warmup + max_results`` results (``max_results`` None: at the
    source's end; a looping or live source needs a limit). Raises the first
    error the pipeline reported (a one-line ``RtsegError``), after stopping it.
    ``samples``: add this run's stage durations to an existing ``StageSamples``
    (several runs, one table); the report's ``stages`` then cover all of them.
    """
    if max_results is not None and max_results < 1:
        raise ValueError("max_results must be at least 1")
    sink = ResultSink(capacity)
    pipe = Pipeline(on_result=sink.put, on_error=sink.error, on_end=sink.end)
    samples = StageSamples() if samples is None else samples
    limit = None if max_results is None else warmup + max_results
    done: list[float] = []  # consumer finish time of every result
    meta: ModelMeta | None = None
    backend: BackendInfo | None = None
    described = ""
    pipe.start(source, factory, mode=mode, loop=loop, smoothing=smoothing, **source_opts)
    try:
        for r in sink:
            if meta is None:
                meta, backend = r.meta, pipe.backend_info
                src = pipe.source
                described = src.describe() if src is not None else str(source)
            t0 = time.perf_counter()
            if consume is not None:
                consume(r)
            t1 = time.perf_counter()
            done.append(t1)
            if len(done) > warmup:
                samples.add_result(r, postprocess_s=t1 - t0, t_done=t1)
            if limit is not None and len(done) >= limit:
                break
    finally:
        # close first: an inference thread waiting in put() is released, so stop() can join it
        sink.close()
        dropped = pipe.stats.snapshot().dropped_capture
        stopped = pipe.stop(stop_timeout)
    if sink.errors:
        raise sink.errors[0]
    measured = max(0, len(done) - warmup)
    ref = done[warmup - 1] if warmup and len(done) > warmup else (done[0] if done else 0.0)
    intervals = measured if (warmup and len(done) > warmup) else max(0, measured - 1)
    wall = (done[-1] - ref) if done else 0.0
    fps = intervals / wall if wall > 0 else float("nan")
    return HeadlessReport(measured, min(warmup, len(done)), wall, fps, samples.summary(), dropped, backend, meta,
                          described, stopped)
