"""Pipeline statistics, computed in one place from the stamps frames and results carry.

Three threads report: the capture thread (``note_captured``,
``note_capture_drops``), the inference thread (``note_result``) and the
display (GUI) thread (``note_displayed``). Any thread may call ``snapshot()``.
Everything is guarded by one lock and each call does O(1) work, so reporting
costs the hot paths next to nothing; the percentile maths happens in
``snapshot()``, which a GUI calls a few times a second.

Rates and distributions cover a rolling window: the samples of the last
``window_s`` seconds, at most ``max_samples`` of them. Counters (frames,
drops) are totals since the last ``reset()``.

``StageSamples`` keeps every sample of a whole run instead (one thread), for
the end-of-run reports of ``rtseg-run`` and ``rtseg-bench``. Both kinds use
the one stage list ``STAGES`` and the one percentile set ``PERCENTILES``, and
``format_stage_table`` prints them the same way everywhere.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rtseg.core.frames import Frame, Result

#: Every stage any report names, in pipeline order. A report shows the stages it has
#: samples for: ``decode`` (read + decode on the capture thread), ``queue`` (waiting in
#: the mailbox), ``preprocess`` (resize to the model input), ``infer`` (backend submit ->
#: labels back), ``h2d``/``compute``/``d2h`` (CUDA backends' device stages inside infer),
#: ``smoothing`` (temporal smoothing + flicker), ``postprocess`` (the result sink's own
#: work: colourise/blend/encode), ``end_to_end`` (decode start -> sink done).
STAGES = ("decode", "queue", "preprocess", "infer", "h2d", "compute", "d2h", "smoothing", "postprocess",
          "end_to_end")
#: The stages the live pipeline stamps on every result (``StatsSnapshot.stages`` keys).
PIPELINE_STAGES = ("decode", "queue", "preprocess", "infer", "smoothing")
#: Device stages a CUDA backend reports per frame (``Result.device_s`` keys).
DEVICE_STAGES = ("h2d", "compute", "d2h")
#: The percentiles every latency report gives (plus mean and max).
PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class Dist:
    """Summary of one duration distribution, in milliseconds."""

    n: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float] | np.ndarray) -> Dist:
        a = np.asarray(seconds, np.float64) * 1e3
        if a.size == 0:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan, nan)
        p50, p90, p95, p99 = (float(v) for v in np.percentile(a, PERCENTILES))
        return cls(int(a.size), float(a.mean()), p50, p90, p95, p99, float(a.max()))


def format_stage_table(stages: dict[str, Dist], *, indent: str = "  ") -> list[str]:
    """The latency table of a report, one line per stage with samples (``STAGES`` order)."""
    lines = [f"{'latency (ms)':<16}{'mean':>8}{'p50':>8}{'p90':>8}{'p95':>8}{'p99':>8}{'max':>8}{'n':>7}"]
    for name in STAGES:
        d = stages.get(name)
        if d is None or not d.n:
            continue
        lines.append(f"{indent}{name:<{16 - len(indent)}}{d.mean:8.2f}{d.p50:8.2f}{d.p90:8.2f}{d.p95:8.2f}"
                     f"{d.p99:8.2f}{d.max:8.2f}{d.n:7d}")
    return lines


class StageSamples:
    """Every stage duration of a whole run, for end-of-run reports.

    Owned by one thread (the consumer of the results); ``add_result`` reads the
    stamps a ``Result`` carries plus the consumer's own ``postprocess`` time.
    """

    def __init__(self) -> None:
        self._samples: dict[str, list[float]] = {k: [] for k in STAGES}

    def add(self, stage: str, seconds: float) -> None:
        if stage not in self._samples:
            raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        self._samples[stage].append(seconds)

    def add_result(self, r: Result, *, postprocess_s: float | None = None, t_done: float | None = None) -> None:
        """Record ``r``'s stages; ``t_done`` (perf_counter) is when the consumer finished with it."""
        self.add("decode", r.decode_s)
        self.add("queue", r.queue_s)
        self.add("preprocess", r.preprocess_s)
        self.add("infer", r.infer_s)
        for k in DEVICE_STAGES:
            if k in r.device_s:
                self.add(k, r.device_s[k])
        self.add("smoothing", r.smoothing_s)
        if postprocess_s is not None:
            self.add("postprocess", postprocess_s)
        if t_done is not None:
            self.add("end_to_end", t_done - (r.frame.t_capture - r.decode_s))

    def __len__(self) -> int:
        return len(self._samples["infer"])

    def summary(self) -> dict[str, Dist]:
        """``Dist`` per stage that has samples, in ``STAGES`` order."""
        return {k: Dist.of(v) for k, v in self._samples.items() if v}


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent view of the pipeline's numbers at one moment."""

    capture_fps: float
    inference_fps: float
    display_fps: float
    latency: Dist  # capture -> result
    frame_age: Dist  # capture -> displayed
    stages: dict[str, Dist] = field(default_factory=dict)  # keys: PIPELINE_STAGES
    captured: int = 0
    results: int = 0
    displayed: int = 0
    dropped_capture: int = 0  # frames replaced in the mailbox before inference took them
    dropped_superseded: int = 0  # results replaced by a newer one before the display showed them
    flicker_raw: float | None = None  # mean share of pixels changing class, network output
    flicker: float | None = None  # the same on what is shown (after smoothing)
    window_s: float = 2.0

    @property
    def dropped(self) -> int:
        return self.dropped_capture + self.dropped_superseded

    def summary(self) -> str:
        """One line for a status bar or a log."""
        parts = [
            f"capture {self.capture_fps:.1f} fps",
            f"infer {self.inference_fps:.1f} fps",
        ]
        if self.displayed:
            parts.append(f"display {self.display_fps:.1f} fps")
        if self.latency.n:
            parts.append(f"latency p50 {self.latency.p50:.1f} / p95 {self.latency.p95:.1f} ms")
        if self.frame_age.n:
            parts.append(f"age p50 {self.frame_age.p50:.1f} ms")
        infer = self.stages.get("infer")
        if infer is not None and infer.n:
            parts.append(f"infer {infer.mean:.1f} ms")
        parts.append(f"dropped {self.dropped}")
        if self.flicker is not None:
            parts.append(f"flicker {100 * self.flicker:.2f}%")
            if self.flicker_raw is not None and self.flicker_raw != self.flicker:
                parts[-1] += f" (raw {100 * self.flicker_raw:.2f}%)"
        return " | ".join(parts)


def _rate(times: deque[float]) -> float:
    """Events per second from the event times in a window: (n - 1) intervals over the span."""
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0


class PipelineStats:
    """Thread-safe rolling statistics of one pipeline (see the module docstring)."""

    def __init__(self, window_s: float = 2.0, max_samples: int = 120) -> None:
        if window_s <= 0 or max_samples < 2:
            raise ValueError("stats window must be > 0 s and hold at least 2 samples")
        self.window_s = float(window_s)
        self.max_samples = int(max_samples)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything (new source or model). Any thread."""
        with self._lock:
            n = self.max_samples
            self._t_capture: deque[float] = deque(maxlen=n)
            self._t_result: deque[float] = deque(maxlen=n)
            self._t_display: deque[float] = deque(maxlen=n)
            # (t_result, latency, decode, queue, preprocess, infer, smoothing)
            self._res: deque[tuple[float, ...]] = deque(maxlen=n)
            self._flicker: deque[tuple[float, float, float]] = deque(maxlen=n)  # (t, raw, shown)
            self._age: deque[tuple[float, float]] = deque(maxlen=n)  # (t_display, age)
            self._captured = 0
            self._results = 0
            self._displayed = 0
            self._drops_capture = 0
            self._drops_superseded = 0
            self._last_displayed_serial: int | None = None

    # -- reporting (hot paths: O(1) each) -------------------------------------
    def note_captured(self, frame: Frame) -> None:
        """A frame was read. Capture thread."""
        with self._lock:
            self._captured += 1
            self._t_capture.append(frame.t_capture)

    def note_capture_drops(self, n: int = 1) -> None:
        """``n`` frames were replaced in the mailbox unread. Capture thread."""
        with self._lock:
            self._drops_capture += n

    def note_result(self, r: Result) -> None:
        """A result was published. Inference thread."""
        with self._lock:
            self._results += 1
            self._t_result.append(r.t_result)
            self._res.append((r.t_result, r.latency_s, r.frame.decode_s, r.queue_s,
                              r.preprocess_s, r.infer_s, r.smoothing_s))
            if r.flicker_raw is not None and r.flicker is not None:
                self._flicker.append((r.t_result, r.flicker_raw, r.flicker))

    def note_displayed(self, r: Result, t: float | None = None) -> None:
        """The display showed ``r`` at ``t`` (perf_counter; default now). GUI thread.

        Results published after the previously shown one and before ``r`` were
        never shown: they count as superseded drops.
        """
        t = time.perf_counter() if t is None else t
        with self._lock:
            last = self._last_displayed_serial
            if last is not None and r.serial <= last:
                return  # the same result painted again (e.g. a resize): not a new display
            if last is not None:
                self._drops_superseded += r.serial - last - 1
            self._last_displayed_serial = r.serial
            self._displayed += 1
            self._t_display.append(t)
            self._age.append((t, t - r.frame.t_capture))

    # -- reading -----------------------------------------------------------------
    def snapshot(self, now: float | None = None) -> StatsSnapshot:
        """Numbers over the window ending at ``now`` (perf_counter; default now). Any thread."""
        now = time.perf_counter() if now is None else now
        lo = now - self.window_s
        with self._lock:
            cap = deque(t for t in self._t_capture if t >= lo)
            res_t = deque(t for t in self._t_result if t >= lo)
            disp = deque(t for t in self._t_display if t >= lo)
            res = [s for s in self._res if s[0] >= lo]
            flick = [f for f in self._flicker if f[0] >= lo]
            age = [a for t, a in self._age if t >= lo]
            counts = (self._captured, self._results, self._displayed,
                      self._drops_capture, self._drops_superseded)
        # one column per field of the result samples (see note_result), in seconds
        cols = np.asarray(res, np.float64).reshape(len(res), 7).T
        stages = {name: Dist.of(cols[2 + i]) for i, name in enumerate(PIPELINE_STAGES)}
        return StatsSnapshot(
            capture_fps=_rate(cap),
            inference_fps=_rate(res_t),
            display_fps=_rate(disp),
            latency=Dist.of(cols[1]),
            frame_age=Dist.of(age),
            stages=stages,
            captured=counts[0],
            results=counts[1],
            displayed=counts[2],
            dropped_capture=counts[3],
            dropped_superseded=counts[4],
            flicker_raw=float(np.mean([f[1] for f in flick])) if flick else None,
            flicker=float(np.mean([f[2] for f in flick])) if flick else None,
            window_s=self.window_s,
        )
