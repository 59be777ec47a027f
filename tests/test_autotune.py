"""The automatic backend/precision chooser (rtseg.resolve.autotune) on real backends and a tiny model.

Timings are injected only through the chooser's own measurement interface (``Measure``): the
``KnownCosts`` measure runs the real backend for its labels and reports a given cost instead of
the wall-clock time, so the choice is deterministic on a busy 2-core machine.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _paths import SMALL_SIZE

from rtseg.core.precision import Precision
from rtseg.resolve import autotune as at


class KnownCosts(at.BackendMeasure):
    """The real backend's labels, with a known cost per candidate label; counts the measurements."""

    def __init__(self, costs: dict[str, float]) -> None:
        super().__init__()
        self.costs = costs
        self.calls: list[str] = []

    def __call__(self, candidate, frames, deadline):
        real = super().__call__(candidate, frames, deadline)
        self.calls.append(candidate.label)
        return at.Measurement(self.costs[candidate.label], real.labels)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return at.tuning_frames(SMALL_SIZE, 3)


@pytest.fixture()
def model_dir(small_onnx: Path, tmp_path: Path) -> Path:
    """A copy of the tiny FP32 ONNX in its own folder (where an INT8 sibling may be put)."""
    shutil.copy(small_onnx, tmp_path / "m.onnx")
    return tmp_path


def _other_network(path: Path) -> Path:
    """A different (tiny) network at the same input size: what a stale or broken INT8 sibling looks like."""
    from precision_helpers import export, tiny_model

    return export(tiny_model(seed=3), path, SMALL_SIZE)


def test_picks_the_fastest_of_known_costs(model_dir: Path, frames: np.ndarray) -> None:
    onnx = model_dir / "m.onnx"
    cands = at.cpu_candidates(onnx, backends=["openvino", "onnxruntime"], flags=frozenset())
    assert [c.label for c in cands] == ["openvino f32", "onnxruntime f32"]  # no bf16 flag: no bf16 candidate
    for costs, want in (({"openvino f32": 0.02, "onnxruntime f32": 0.01}, "onnxruntime"),
                        ({"openvino f32": 0.01, "onnxruntime f32": 0.02}, "openvino")):
        best, decision = at.choose(cands, frames, measure=KnownCosts(costs), budget_s=5)
        assert best.kind == want and decision.kind == want
        assert decision.ms_per_frame == pytest.approx(10.0)
        assert decision.line().startswith(f"auto: {want} f32 (measured): fastest of ")
    assert cands[0].options == {"requests": 2}  # OpenVINO runs two infer requests in flight


class ChangingCosts(at.BackendMeasure):
    """The real backend's labels; each candidate's n-th measurement costs ``costs[label][n]``."""

    def __init__(self, costs: dict[str, list[float]]) -> None:
        super().__init__()
        self.costs = costs
        self.calls: list[str] = []

    def __call__(self, candidate, frames, deadline):
        real = super().__call__(candidate, frames, deadline)
        n = self.calls.count(candidate.label)
        self.calls.append(candidate.label)
        return at.Measurement(self.costs[candidate.label][n], real.labels)


def test_a_slow_moment_does_not_decide(model_dir: Path, frames: np.ndarray) -> None:
    """Every candidate is measured in four rounds (in order, then in reverse, alternately) and ranked
    by its median: a moment of outside load in one round, or one lucky round, does not decide."""
    onnx = model_dir / "m.onnx"
    cands = at.cpu_candidates(onnx, backends=["openvino", "onnxruntime"], flags=frozenset())
    m = ChangingCosts({"openvino f32": [0.02, 0.02, 0.02, 0.02], "onnxruntime f32": [0.05, 0.01, 0.01, 0.01]})
    best, decision = at.choose(cands, frames, measure=m, budget_s=5)
    assert m.calls == ["openvino f32", "onnxruntime f32", "onnxruntime f32", "openvino f32"] * 2
    assert best.kind == "onnxruntime" and decision.ms_per_frame == pytest.approx(10.0)
    assert "medians of 4 interleaved rounds" in decision.why
    # One round far faster than the others (what a lucky moment on a shared VM looks like) loses
    # to a candidate steadily faster in the other three.
    m = ChangingCosts({"openvino f32": [0.02, 0.005, 0.02, 0.02], "onnxruntime f32": [0.015] * 4})
    best, _ = at.choose(cands, frames, measure=m, budget_s=5)
    assert best.kind == "onnxruntime"


def test_the_real_measure_opens_each_backend_once_and_the_chooser_closes_it(model_dir: Path,
                                                                            frames: np.ndarray) -> None:
    """BackendMeasure keeps each candidate's backend open between rounds (compiled once) and the
    chooser releases every one of them when it has decided."""
    onnx = model_dir / "m.onnx"
    cands = at.cpu_candidates(onnx, backends=["openvino", "onnxruntime"], flags=frozenset())

    class Opens(at.BackendMeasure):
        def __init__(self) -> None:
            super().__init__()
            self.opened: list[str] = []
            self.backends: list = []

        def _backend(self, candidate, warmup):
            known = (candidate.label, str(candidate.artifact)) in self._open
            be = super()._backend(candidate, warmup)
            if not known:
                self.opened.append(candidate.label)
                self.backends.append(be)
            return be

    m = Opens()
    at.choose(cands, frames, measure=m, budget_s=2, throughput=True)
    assert m.opened == ["openvino f32", "onnxruntime f32", "openvino f32, 2 streams"]
    assert m.backends and not any(be.active for be in m.backends) and not m._open


def test_bf16_is_a_candidate_only_where_the_cpu_computes_it(model_dir: Path) -> None:
    onnx = model_dir / "m.onnx"
    with_flag = at.cpu_candidates(onnx, backends=["openvino"], flags=frozenset({"avx512_bf16"}))
    assert [c.label for c in with_flag] == ["openvino f32", "openvino bf16"]
    assert [c.label for c in at.cpu_candidates(onnx, backends=["onnxruntime"], flags=frozenset())] == \
        ["onnxruntime f32"]


def test_drops_a_fast_candidate_whose_labels_disagree(model_dir: Path, frames: np.ndarray) -> None:
    onnx = model_dir / "m.onnx"
    _other_network(model_dir / "m_int8.onnx")
    cands = at.cpu_candidates(onnx, backends=["openvino", "onnxruntime"], flags=frozenset())
    assert [c.label for c in cands] == ["openvino f32", "openvino int8", "onnxruntime f32"]
    costs = {"openvino f32": 0.03, "openvino int8": 0.001, "onnxruntime f32": 0.02}
    best, decision = at.choose(cands, frames, measure=KnownCosts(costs), budget_s=5)
    assert best.label == "onnxruntime f32"  # the fastest one that keeps FP32's labels
    assert "openvino int8 1.0 ms (dropped, " in decision.why


def test_the_decision_is_cached_by_artifact_size_cpu_and_versions(model_dir: Path, frames: np.ndarray,
                                                                   tmp_path: Path) -> None:
    onnx = model_dir / "m.onnx"
    cache = tmp_path / "cache"
    cands = at.cpu_candidates(onnx, backends=["openvino", "onnxruntime"], flags=frozenset())
    m = KnownCosts({"openvino f32": 0.02, "onnxruntime f32": 0.01})
    kw = dict(candidates=cands, frames=frames, measure=m, directory=cache, budget_s=5)

    first = at.autotune(onnx, **kw)
    assert not first.cached and first.kind == "onnxruntime" and len(m.calls) == 8  # four rounds
    again = at.autotune(onnx, **kw)
    assert again.cached and again.kind == "onnxruntime" and len(m.calls) == 8  # read, not measured
    assert again.line().startswith("auto: onnxruntime f32 (cached): ")
    forced = at.autotune(onnx, force=True, **kw)  # rtseg-bench --autotune
    assert not forced.cached and len(m.calls) == 16
    assert len(json.loads((cache / "autotune.json").read_text())) == 1

    # The key: every part changes it.
    cpu = ("Some CPU", frozenset({"avx2"}))
    versions = {"openvino": "1", "onnxruntime": "1"}
    base = at.cache_key(onnx, SMALL_SIZE, cpu=cpu, versions=versions)
    assert base == at.cache_key(onnx, SMALL_SIZE, cpu=cpu, versions=versions)
    assert base != at.cache_key(onnx, (64, 96), cpu=cpu, versions=versions)
    assert base != at.cache_key(onnx, SMALL_SIZE, cpu=("Some CPU", frozenset({"avx2", "avx512_bf16"})),
                                versions=versions)
    assert base != at.cache_key(onnx, SMALL_SIZE, cpu=("Other CPU", cpu[1]), versions=versions)
    assert base != at.cache_key(onnx, SMALL_SIZE, cpu=cpu, versions={**versions, "openvino": "2"})
    assert base != at.cache_key(onnx, SMALL_SIZE, cpu=cpu, versions=versions,
                                int8=_other_network(tmp_path / "other_int8.onnx"))

    # A new model file under the same name measures again.
    _other_network(onnx)
    n = len(m.calls)
    at.autotune(onnx, **{**kw, "candidates": at.cpu_candidates(onnx, backends=["openvino", "onnxruntime"],
                                                                 flags=frozenset())})
    assert len(m.calls) > n
    # A damaged cache file counts as empty, and is replaced.
    (cache / "autotune.json").write_text("{not json")
    assert not at.autotune(onnx, **kw).cached


def test_resolve_auto_and_explicit_flags(small_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    """``auto auto`` measures the real backends once (then reads the cache); named flags override."""
    from rtseg.resolve.backend import resolve
    from rtseg.resolve.model import ModelChoice

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    choice = ModelChoice(None, None, None, None, small_onnx)
    lines: list[str] = []
    res = resolve(choice, "auto", "auto", report=lines.append)
    assert res.kind in ("openvino", "onnxruntime") and res.precision is not None
    assert res.artifact is not None and res.artifact.is_file()
    assert sum(s.startswith("auto: ") and "fastest of" in s for s in lines) == 1
    assert (tmp_path / "xdg" / "rtseg" / "autotune.json").is_file()
    lines.clear()
    again = resolve(choice, "auto", "auto", report=lines.append)
    assert (again.kind, again.precision) == (res.kind, res.precision) and "(cached)" in lines[-1]
    with again.create() as be:  # the chosen backend really runs
        assert be.infer(at.tuning_frames(SMALL_SIZE, 1)).shape == (1, *SMALL_SIZE)

    lines.clear()
    ort = resolve(choice, "onnxruntime", "auto", report=lines.append)
    assert (ort.kind, ort.precision) == ("onnxruntime", Precision.F32) and not lines
    ov = resolve(choice, "auto", "f32", report=lines.append)
    assert (ov.kind, ov.precision) == ("openvino", Precision.F32) and not lines


def test_the_int8_artifact_beside_the_checkpoint_counts_if_its_input_matches(model_dir: Path,
                                                                              tmp_path: Path) -> None:
    onnx = model_dir / "m.onnx"
    ckpt_dir = tmp_path / "assets"
    ckpt_dir.mkdir()
    ckpt = ckpt_dir / "model.pt"
    assert at.int8_sibling(onnx, ckpt) is None
    _other_network(ckpt_dir / "model_int8.onnx")
    found = at.int8_sibling(onnx, ckpt)
    assert found == ckpt_dir / "model_int8.onnx"
    labels = [c.label for c in at.cpu_candidates(onnx, backends=["openvino"], flags=frozenset(), int8=found)]
    assert labels == ["openvino f32", "openvino int8"]
    # Where the CPU computes bf16, the INT8 graph's float layers may run at it: a candidate of its own.
    labels = [c.label for c in at.cpu_candidates(onnx, backends=["openvino"], flags=frozenset({"avx512_bf16"}),
                                                 int8=found)]
    assert labels == ["openvino f32", "openvino bf16", "openvino int8", "openvino int8 (float layers bf16)"]
    from precision_helpers import export, tiny_model

    other_size = export(tiny_model(seed=3), tmp_path / "small_int8.onnx", (64, 96))
    labels = [c.label for c in at.cpu_candidates(onnx, backends=["openvino"], flags=frozenset(), int8=other_size)]
    assert labels == ["openvino f32"]  # built for another input size: no candidate


def test_benchmark_mode_tries_two_streams_on_the_fastest_openvino_candidate(model_dir: Path, frames: np.ndarray,
                                                                 tmp_path: Path) -> None:
    """Benchmark mode times the fastest OpenVINO candidate's two-stream twin and the winner again, and
    keeps the faster; the live/viewer mode never measures or picks two streams; the two modes cache apart."""
    onnx = model_dir / "m.onnx"
    cands = at.cpu_candidates(onnx, backends=["openvino", "onnxruntime"], flags=frozenset())
    costs = {"openvino f32": 0.02, "openvino f32, 2 streams": 0.015, "onnxruntime f32": 0.03}
    m = KnownCosts(costs)
    best, decision = at.choose(cands, frames, measure=m, budget_s=5, throughput=True)
    assert best.options == {"requests": 3, "streams": 2} and decision.options == best.options
    assert decision.label == "openvino f32, 2 streams"
    assert m.calls[-4:] == ["openvino f32, 2 streams", "openvino f32", "openvino f32", "openvino f32, 2 streams"]
    assert "benchmark mode: openvino f32, 2 streams 15.0 ms vs 20.0 ms with one stream" in decision.why
    # Slower with two streams: the one-stream winner stays.
    slow = KnownCosts({**costs, "openvino f32, 2 streams": 0.025})
    best, _ = at.choose(cands, frames, measure=slow, budget_s=5, throughput=True)
    assert best.options == {"requests": 2}
    # A viewer or a live source: no twin is measured.
    m = KnownCosts(costs)
    best, decision = at.choose(cands, frames, measure=m, budget_s=5)
    assert best.options == {"requests": 2} and not any("streams" in c for c in m.calls)
    # ONNX Runtime winning with one stream: the fastest OpenVINO candidate's twin is still tried
    # against it, and kept only when faster.
    m = KnownCosts({**costs, "onnxruntime f32": 0.001})
    best, _ = at.choose(cands, frames, measure=m, budget_s=5, throughput=True)
    assert best.kind == "onnxruntime" and m.calls[-4:] == ["openvino f32, 2 streams", "onnxruntime f32",
                                                          "onnxruntime f32", "openvino f32, 2 streams"]
    m = KnownCosts({**costs, "onnxruntime f32": 0.018})
    best, decision = at.choose(cands, frames, measure=m, budget_s=5, throughput=True)
    assert best.kind == "openvino" and best.options == {"requests": 3, "streams": 2}
    assert "benchmark mode: openvino f32, 2 streams 15.0 ms vs onnxruntime f32 18.0 ms" in decision.why

    cache = tmp_path / "cache"
    kw = dict(candidates=cands, frames=frames, directory=cache, budget_s=5)
    live = at.autotune(onnx, measure=KnownCosts(costs), **kw)
    bench = at.autotune(onnx, measure=KnownCosts(costs), throughput=True, **kw)
    assert not bench.cached and bench.options.get("streams") == 2 and live.options.get("streams") is None
    assert at.autotune(onnx, measure=KnownCosts(costs), **kw).options == live.options  # cached apart
    assert len(json.loads((cache / "autotune.json").read_text())) == 2


def test_the_real_measure_times_two_in_flight_as_the_pipeline_runs_them(model_dir: Path,
                                                                       frames: np.ndarray) -> None:
    """BackendMeasure on a two-request OpenVINO candidate: labels of every tuning frame, the same as
    one request gives, and a positive time per frame."""
    onnx = model_dir / "m.onnx"
    one = at.Candidate("openvino", Precision.F32, onnx)
    two = at.Candidate("openvino", Precision.F32, onnx, {"requests": 3, "streams": 2})
    far = 1e18
    measure = at.BackendMeasure()
    a, b = measure(one, frames, far), measure(two, frames, far)
    measure.close()
    assert b.labels.shape == a.labels.shape == (len(frames), *SMALL_SIZE)
    assert at.agreement(a.labels, b.labels) > 0.999
    assert 0 < b.seconds_per_frame < 5
