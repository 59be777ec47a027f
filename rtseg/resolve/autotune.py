"""``--backend auto --precision auto``: measure the CPU paths this machine has, keep the fastest correct one.

    decision = autotune(onnx_path, report=print)      # measured once, then read from the cache
    decision.kind, decision.precision, decision.artifact

Candidates (``cpu_candidates``) are the installed CPU backends times the
precisions this CPU really computes in: OpenVINO f32, OpenVINO bf16 where the
CPU flags say AVX512-BF16 or AMX-BF16 (without them OpenVINO would emulate and
be slower), OpenVINO on the model's INT8 artifact when one lies beside the
FP32 ONNX (``int8_sibling``), and ONNX Runtime f32.

Each candidate's backend is opened once (compiled, one warm-up frame) and
timed the way the pipeline will run it (two in flight for a backend that
overlaps, one at a time otherwise) in ``ROUNDS`` short rounds, in order and in
reverse alternately, within a bounded total (``budget_s``, about 10 s); its
time is the median of its rounds, so the machine's drift weighs on every
candidate alike. A candidate whose labels agree with the FP32
reference (the first candidate, OpenVINO or ONNX Runtime f32) on fewer than
``MIN_AGREEMENT`` of the pixels is dropped, whatever its speed; the fastest of
the rest wins. For benchmark mode (``throughput=True``: files processed as
fast as possible, ``rtseg-bench``, ``rtseg-run`` on a file) the fastest OpenVINO
candidate's twin with two streams (the THROUGHPUT hint,
``OpenVinoBackend(streams=2, requests=3)``) is then timed against the winner, whichever
backend won, and the faster of the two is kept; live
sources and the GUI never get two streams, since each frame then takes longer
to come back. The decision is cached as JSON in the user cache directory
(``$XDG_CACHE_HOME/rtseg/autotune.json``, else ``~/.cache/rtseg``) under a key
made of the artifact's content hash, its input size, the CPU model and flags,
the backend versions and the mode (benchmark or live), so a new model file, a new CPU or an upgraded
OpenVINO measures again; ``force=True`` (``rtseg-bench --autotune``) always
does.

Timing goes through one interface, ``Measure``: ``BackendMeasure`` runs the
real backend; tests subclass it to replace the measured seconds by known costs
while the labels still come from the real backend.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtseg.core.cpu import cpu_description, int8_saturates
from rtseg.core.cpu import has_bf16 as cpu_has_bf16
from rtseg.core.errors import BackendError, UserInputError
from rtseg.core.precision import Precision

#: Labels must agree with FP32 on at least this share of pixels for a candidate to be eligible.
MIN_AGREEMENT = 0.995
#: Bump when the candidate rules or the cache layout change: old decisions are then ignored.
CACHE_VERSION = 4  # 2: INT8 with bf16 float layers is a candidate; 3: pipelined timing, streams;
# 4: medians of interleaved rounds (decisions from one or two measurements are measured again)

Report = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    """One way to run the model: a backend, the precision asked of it, the artifact it opens."""

    kind: str  # "openvino" | "onnxruntime"
    precision: Precision
    artifact: Path
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def label(self) -> str:
        rest = self.options.get("float_precision")
        streams = self.options.get("streams", 1)
        return (f"{self.kind} {self.precision}" + (f" (float layers {rest})" if rest else "")
                + (f", {streams} streams" if streams > 1 else ""))

    @property
    def in_flight(self) -> int:
        """Frames the pipeline keeps in flight on this candidate (OpenVINO's ``requests``)."""
        return int(self.options.get("requests", 1))

    def two_streams(self) -> Candidate:
        """This OpenVINO candidate with two streams and a third frame queued behind them."""
        return Candidate(self.kind, self.precision, self.artifact, {**self.options, "requests": 3, "streams": 2})


@dataclass(frozen=True)
class Measurement:
    """What one candidate did on the tuning frames."""

    seconds_per_frame: float
    labels: np.ndarray  # uint8 [N, H, W], one row per tuning frame


@dataclass
class Decision:
    """The chosen candidate and why (what the one printed line says)."""

    kind: str
    precision: str
    artifact: str
    ms_per_frame: float
    why: str
    options: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    label: str = ""  # the candidate's label, e.g. "openvino int8 (float layers bf16)"

    def line(self) -> str:
        src = "cached" if self.cached else "measured"
        return f"auto: {self.label or f'{self.kind} {self.precision}'} ({src}): {self.why}"


# -- what this machine has ------------------------------------------------------------------------

def _saturation_hint(cand: Candidate) -> str:
    """Why an INT8 candidate may disagree here: 8-bit weights on a CPU whose INT8 kernels saturate."""
    if cand.precision is not Precision.INT8 or not int8_saturates():
        return ""
    from rtseg.runtime.onnx_file import OnnxArtifact

    if OnnxArtifact.open(cand.artifact).int8_weight_bits == 7:
        return ""
    return (" [this CPU has no VNNI and the file has 8-bit weights, which saturate here: rebuild it with "
            "rtseg-export --quantizer nncf --int8-weight-bits 7]")


def installed_backends() -> list[str]:
    """CPU backends whose framework is importable, in reference order (OpenVINO first)."""
    return [k for k, mod in (("openvino", "openvino"), ("onnxruntime", "onnxruntime"))
            if importlib.util.find_spec(mod) is not None]


def int8_sibling(*artifacts: Path | None) -> Path | None:
    """The model's INT8 artifact: ``NAME_int8.onnx`` beside the first of ``artifacts`` (the FP32 ONNX,
    then e.g. the checkpoint it was exported from, as ``assets/`` ships them) that has one."""
    for a in artifacts:
        if a is not None:
            p = a.with_name(a.stem + "_int8.onnx")
            if p.is_file():
                return p
    return None


def cpu_candidates(fp32_onnx: Path, *, backends: Sequence[str] | None = None,
                   flags: frozenset[str] | None = None, int8: Path | None = None) -> list[Candidate]:
    """The candidates for ``fp32_onnx`` on this machine; the first is the FP32 reference.

    ``int8``: the model's INT8 artifact (default: ``int8_sibling(fp32_onnx)``); one built for
    another input size or batch is no candidate."""
    have = list(backends) if backends is not None else installed_backends()
    if flags is None:
        flags = cpu_description()[1]
    out: list[Candidate] = []
    if "openvino" in have:
        # Two infer requests: the pipeline's decode/resize/colourise overlap inference.
        ov = {"requests": 2}
        out.append(Candidate("openvino", Precision.F32, fp32_onnx, ov))
        if cpu_has_bf16(flags):
            out.append(Candidate("openvino", Precision.BF16, fp32_onnx, ov))
        int8 = int8 or int8_sibling(fp32_onnx)
        if int8 is not None and _same_input(int8, fp32_onnx):
            # An INT8 graph runs its quantized layers in INT8; the layers left in float run at
            # f32, or at bf16 where the CPU has it (a second candidate, checked like the others).
            out.append(Candidate("openvino", Precision.INT8, int8, ov))
            if cpu_has_bf16(flags):
                out.append(Candidate("openvino", Precision.INT8, int8, {**ov, "float_precision": "bf16"}))
    if "onnxruntime" in have:
        out.append(Candidate("onnxruntime", Precision.F32, fp32_onnx))
    if not out:
        raise UserInputError("no CPU backend is installed for --backend auto: pip install 'rtseg[cpu]'")
    return out


def _same_input(a: Path, b: Path) -> bool:
    from rtseg.runtime.onnx_file import OnnxArtifact

    try:
        return OnnxArtifact.open(a).input_shape == OnnxArtifact.open(b).input_shape
    except BackendError:
        return False  # not a readable rtseg ONNX: no candidate


def backend_versions(backends: Sequence[str]) -> dict[str, str]:
    """Installed versions of the candidate backends' frameworks (part of the cache key)."""
    from importlib import metadata

    out: dict[str, str] = {}
    for k in backends:
        try:
            out[k] = metadata.version(k)
        except metadata.PackageNotFoundError:
            out[k] = "?"
    return out


# -- measuring --------------------------------------------------------------------------------------

class Measure:
    """The chooser's measurement interface: run ``candidate`` on ``frames``, return its labels and time.

    ``deadline`` is a ``time.monotonic()`` value: stop timing frames once it has passed (at least
    one timed frame always runs, so each candidate has labels to check). The chooser measures each
    candidate several times and calls ``close`` once it has decided."""

    def __call__(self, candidate: Candidate, frames: np.ndarray, deadline: float) -> Measurement:
        raise NotImplementedError

    def close(self) -> None:
        """Release whatever the measurements kept open (nothing, unless a subclass keeps something)."""


class BackendMeasure(Measure):
    """Times the real backend as the pipeline runs it: the frames one at a time, or with
    ``candidate.in_flight`` submitted before each collect.

    Each candidate's backend is created, compiled and warmed up (one untimed frame) on its first
    measurement and kept open for the next ones until ``close``, so the chooser can measure every
    candidate in several short interleaved rounds without compiling again. Opening is not timing:
    the first measurement's window (``deadline`` minus the time of the call) starts once the
    backend is ready."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], Any] = {}  # (label, artifact) -> active backend

    def _backend(self, candidate: Candidate, warmup: np.ndarray) -> Any:
        key = (candidate.label, str(candidate.artifact))
        be = self._open.get(key)
        if be is None:
            from rtseg.runtime.factory import create_backend

            opts = dict(candidate.options)
            prec = None if candidate.precision is Precision.INT8 else candidate.precision
            be = create_backend(candidate.kind, candidate.artifact, precision=prec, **opts)
            be.activate()
            try:
                be.infer(warmup)  # compile caches, thread pools: not what a running app pays
            except BaseException:
                be.deactivate()
                raise
            self._open[key] = be
        return be

    def __call__(self, candidate: Candidate, frames: np.ndarray, deadline: float) -> Measurement:
        window = max(0.0, deadline - time.monotonic())
        be = self._backend(candidate, frames[:1])
        deadline = time.monotonic() + window
        depth = max(1, min(candidate.in_flight, be.max_in_flight))
        if depth == 1:
            labels: list[np.ndarray] = []
            times: list[float] = []
            for i in range(len(frames)):
                t0 = time.perf_counter()
                labels.append(be.infer(frames[i:i + 1])[0])
                times.append(time.perf_counter() - t0)
                if time.monotonic() > deadline:
                    break
            # The median: one preempted frame on a busy machine should not decide.
            return Measurement(float(np.median(times)), np.stack(labels))
        return _pipelined(be, frames, depth, deadline)

    def close(self) -> None:
        """Deactivate every backend the measurements opened."""
        open_, self._open = self._open, {}
        for be in open_.values():
            be.deactivate()


#: At most this many frames per pipelined timing (the deadline usually stops it first).
PIPELINED_MAX = 64


def _pipelined(be: Any, frames: np.ndarray, depth: int, deadline: float) -> Measurement:
    """Seconds per frame with ``depth`` frames in flight: the time from the first collect to the
    last over the frames in between (the pipeline's frame interval). Not a median of single
    intervals: with two streams both requests finish together, so intervals alternate long, short."""
    labels: list[np.ndarray] = []
    n = len(frames)
    t_start = time.perf_counter()
    submitted = 0
    for i in range(depth):
        be.submit(frames[i % n:i % n + 1])
        submitted += 1
    stamps: list[float] = []
    while be.in_flight:
        out = be.collect()[0]
        stamps.append(time.perf_counter())
        if len(labels) < n:
            labels.append(out)
        # Round the frames again and again until the deadline (or PIPELINED_MAX frames).
        if submitted < PIPELINED_MAX and time.monotonic() <= deadline:
            be.submit(frames[submitted % n:submitted % n + 1])
            submitted += 1
    if len(stamps) > depth:
        # From the collect that fills the pipeline to the last: steady state only.
        per = (stamps[-1] - stamps[depth - 1]) / (len(stamps) - depth)
    else:
        per = (stamps[-1] - t_start) / len(stamps)
    return Measurement(float(per), np.stack(labels))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels with the same label over the frames both have."""
    n = min(len(a), len(b))
    return float(np.mean(a[:n] == b[:n]))


#: Rounds in which every candidate is measured, in order and in reverse alternately; a candidate's
#: time is the median of its rounds. On this shared 2-core VM the speed drifts by 20-30% within
#: seconds (OpenVINO f32 timed 54.8 ms by the chooser, then ran at 87 ms in the benchmark that
#: followed), so one or two long measurements per candidate let a lucky moment decide; short
#: interleaved rounds spread the drift over every candidate alike.
ROUNDS = 4


def choose(candidates: Sequence[Candidate], frames: np.ndarray, *, measure: Measure | None = None,
           budget_s: float = 10.0, min_agreement: float = MIN_AGREEMENT,
           report: Report | None = None, throughput: bool = False) -> tuple[Candidate, Decision]:
    """Measure every candidate (``candidates[0]`` is the FP32 reference) and pick the fastest one whose
    labels agree with the reference on at least ``min_agreement`` of the pixels.

    Each candidate is measured in ``ROUNDS`` rounds (its labels checked in the first) and ranked by
    its median. ``throughput``: benchmark mode; the fastest OpenVINO candidate with two requests in
    flight then has its two-stream twin timed against the winner (module docstring)."""
    if not candidates:
        raise UserInputError("no candidate to choose from")
    measure = measure or BackendMeasure()
    try:
        return _choose(list(candidates), frames, measure, budget_s, min_agreement, report, throughput)
    finally:
        measure.close()


def _choose(candidates: list[Candidate], frames: np.ndarray, measure: Measure, budget_s: float,
            min_agreement: float, report: Report | None, throughput: bool) -> tuple[Candidate, Decision]:
    start = time.monotonic()
    n = len(candidates)
    times: list[list[float]] = [[] for _ in candidates]
    status = [""] * n  # "reference", "failed: ...", "dropped, ..." or "" (eligible)
    ref: Measurement | None = None
    twin_left = _TWIN_MEASUREMENTS if throughput else 0

    def share() -> float:
        """An equal share of the budget left for each measurement still to come (this one included)."""
        nonlocal twin_left
        live = [i for i in range(n) if not status[i].startswith(("failed", "dropped"))]
        rounds_left = sum(ROUNDS - len(times[i]) for i in live)
        left = rounds_left + twin_left
        if not rounds_left and twin_left:  # the benchmark-mode measurements come last
            twin_left -= 1
        return max(0.0, budget_s - (time.monotonic() - start)) / max(1, left)

    for r in range(ROUNDS):
        for i in (range(n) if r % 2 == 0 else reversed(range(n))):
            cand = candidates[i]
            if status[i].startswith(("failed", "dropped")):
                continue
            if r == 0 and report is not None:
                report(f"auto: timing {cand.label} ({i + 1}/{n}) ...")
            try:
                m = measure(cand, frames, time.monotonic() + share())
            except BackendError as exc:  # e.g. a precision this OpenVINO build refuses: not a candidate
                if not times[i]:
                    status[i] = f"failed: {exc}"
                else:
                    times[i].append(float(np.median(times[i])))  # it ran before: keep what it did
                continue
            times[i].append(m.seconds_per_frame)
            if r > 0:
                continue
            if ref is None:
                ref, status[i] = m, "reference"
                continue
            agree = agreement(m.labels, ref.labels)
            if agree < min_agreement:
                status[i] = f"dropped, {100 * agree:.2f}% agreement{_saturation_hint(candidates[i])}"
    median = [float(np.median(t)) if t else float("nan") for t in times]
    ok = [i for i in range(n) if times[i] and not status[i].startswith(("failed", "dropped"))]
    if not ok:
        raise BackendError("auto: no CPU backend ran this model; pass --backend and --precision explicitly")
    w = min(ok, key=lambda i: median[i])
    best, best_s = candidates[w], median[w]
    streams_note = ""
    # Benchmark mode: the fastest OpenVINO candidate's two-stream twin may beat the winner even when
    # the winner is another backend (AVX2-only EPYC: ONNX Runtime f32 71.5 ms beat OpenVINO f32's
    # 76.4 ms with one stream).
    twinnable = [i for i in ok if _has_streams_twin(candidates[i])] if throughput else []
    if twinnable:
        base = candidates[min(twinnable, key=lambda i: median[i])]
        best, best_s, streams_note = _try_streams(base, best, best_s, ref, frames, measure, min_agreement,
                                                  report, share)
    parts = []
    for i, c in enumerate(candidates):
        if not times[i]:
            parts.append(f"{c.label} {status[i]}")
        else:
            note = f" ({status[i]})" if status[i] and status[i] != "reference" else ""
            parts.append(f"{c.label} {1000 * median[i]:.1f} ms{note}")
    why = ("fastest of " + ", ".join(parts) + f" (medians of {ROUNDS} interleaved rounds); needs >= "
           f"{100 * min_agreement:g}% label agreement with FP32" + streams_note)
    return best, Decision(best.kind, str(best.precision), str(best.artifact), 1000 * best_s, why,
                          dict(best.options), label=best.label)


#: Benchmark mode's extra measurements: twin, winner, winner, twin (ABBA: a steady drift weighs
#: on both means alike).
_TWIN_MEASUREMENTS = 4


def _has_streams_twin(c: Candidate) -> bool:
    return c.kind == "openvino" and c.in_flight == 2 and c.options.get("streams", 1) == 1


def _try_streams(base: Candidate, best: Candidate, best_s: float, ref: Measurement | None, frames: np.ndarray,
                 measure: Measure, min_agreement: float, report: Report | None,
                 share: Callable[[], float]) -> tuple[Candidate, float, str]:
    """Benchmark mode: time the two-stream twin of ``base`` (the fastest OpenVINO candidate) and the
    winner ``best`` in the order twin, winner, winner, twin, and keep the faster by their means."""
    twin = base.two_streams()
    if report is not None:
        report(f"auto: timing {twin.label} (benchmark mode) ...")
    try:
        first = measure(twin, frames, time.monotonic() + share())
    except BackendError as exc:
        return best, best_s, f"; {twin.label} failed: {exc}"
    if ref is not None and agreement(first.labels, ref.labels) < min_agreement:
        return best, best_s, f"; {twin.label} dropped, {100 * agreement(first.labels, ref.labels):.2f}% agreement"
    tw, bw = [first.seconds_per_frame], []
    try:
        bw.append(measure(best, frames, time.monotonic() + share()).seconds_per_frame)
        bw.append(measure(best, frames, time.monotonic() + share()).seconds_per_frame)
        tw.append(measure(twin, frames, time.monotonic() + share()).seconds_per_frame)
    except BackendError:
        pass  # both ran before: compare what they did
    t_s = float(np.mean(tw))
    b_s = float(np.mean(bw)) if bw else best_s
    note = (f"; benchmark mode: {twin.label} {1000 * t_s:.1f} ms vs "
            + (f"{1000 * b_s:.1f} ms with one stream" if best == base else f"{best.label} {1000 * b_s:.1f} ms"))
    return (twin, t_s, note) if t_s < b_s else (best, b_s, note)


# -- the cache ----------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rtseg``, else ``~/.cache/rtseg``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rtseg"


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(artifact: Path, input_size: tuple[int, int], *, cpu: tuple[str, frozenset[str]] | None = None,
              versions: dict[str, str] | None = None, int8: Path | None = None, throughput: bool = False) -> str:
    """Hash of what makes a decision valid: the artifact's (and its INT8 sibling's) content, the input
    size, the CPU model and flags, the backend versions, and the mode (benchmark or live)."""
    name, flags = cpu if cpu is not None else cpu_description()
    parts = {"v": CACHE_VERSION, "artifact": file_hash(artifact), "int8": file_hash(int8) if int8 else None,
             "size": list(input_size), "cpu": name, "flags": sorted(flags),
             "versions": versions if versions is not None else backend_versions(installed_backends()),
             "throughput": throughput}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def load_cached(key: str, *, directory: Path | None = None) -> Decision | None:
    """The cached decision for ``key``, if any (a damaged cache file counts as empty)."""
    path = (directory or cache_dir()) / "autotune.json"
    try:
        entry = json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(entry, dict) or not Path(entry.get("artifact", "")).is_file():
        return None  # the chosen file (an INT8 sibling) is gone: measure again
    try:
        return Decision(**{**entry, "cached": True})
    except TypeError:
        return None


def store(key: str, decision: Decision, *, directory: Path | None = None) -> None:
    """Add ``decision`` under ``key`` to the cache file (written atomically)."""
    from rtseg.core.atomic import atomic_write_text

    d = directory or cache_dir()
    path = d / "autotune.json"
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[key] = {k: v for k, v in asdict(decision).items() if k != "cached"}
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


# -- the one entry point ------------------------------------------------------------------------------

def tuning_frames(input_size: tuple[int, int], n: int = 8) -> np.ndarray:
    """Frames at the model input size: the bundled sample clip's, else synthetic street scenes."""
    from rtseg.resolve.model import SAMPLE_CLIP

    if SAMPLE_CLIP.is_file():
        from rtseg.pipeline.sampling import read_frames

        return read_frames(SAMPLE_CLIP, input_size, n)
    from rtseg.core.synthetic import street_frame

    h, w = input_size
    return np.stack([street_frame(h, w, t=t) for t in range(n)])


def autotune(fp32_onnx: Path, *, force: bool = False, budget_s: float = 10.0, measure: Measure | None = None,
             candidates: Sequence[Candidate] | None = None, frames: np.ndarray | None = None,
             directory: Path | None = None, report: Report | None = None, int8: Path | None = None,
             throughput: bool = False) -> Decision:
    """The cached decision for ``fp32_onnx`` on this machine, else measure (see the module docstring).

    ``int8``: the model's INT8 artifact, when it is not ``NAME_int8.onnx`` beside ``fp32_onnx``.
    ``throughput``: benchmark mode (files as fast as possible), which may choose two streams."""
    from rtseg.runtime.onnx_file import OnnxArtifact

    art = OnnxArtifact.open(fp32_onnx)
    if art.precision is not Precision.F32:
        raise UserInputError(f"--backend auto measures against the FP32 model; {fp32_onnx.name} is "
                             f"{art.precision}: pass --backend/--precision, or the FP32 ONNX")
    size = art.input_shape[1:]
    int8 = int8 or int8_sibling(fp32_onnx)
    cands = list(candidates) if candidates is not None else cpu_candidates(fp32_onnx, int8=int8)
    key = cache_key(fp32_onnx, size, int8=int8, throughput=throughput)
    if not force:
        hit = load_cached(key, directory=directory)
        if hit is not None:
            return hit
    if frames is None:
        frames = tuning_frames(size)
    _, decision = choose(cands, frames, measure=measure, budget_s=budget_s, report=report, throughput=throughput)
    store(key, decision, directory=directory)
    return decision
