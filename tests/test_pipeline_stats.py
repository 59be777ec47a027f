"""Stats maths on hand-made time stamps (no threads, no clocks)."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from rtseg.core.frames import Frame, Result
from rtseg.core.meta import ModelMeta
from rtseg.pipeline.stats import PIPELINE_STAGES, STAGES, Dist, PipelineStats, StageSamples, format_stage_table

META = ModelMeta(model="test", class_names=("a", "b"), palette=((0, 0, 0), (255, 255, 255)),
                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
LABELS = np.zeros((4, 6), np.uint8)


def make_result(serial: int, t_cap: float, *, decode: float = 0.002, queue: float = 0.001,
                pre: float = 0.003, infer: float = 0.010, smooth: float = 0.0,
                flicker: tuple[float, float] | None = None) -> Result:
    frame = Frame(seq=serial, t_capture=t_cap, image=np.zeros((4, 6, 3), np.uint8), index=serial, decode_s=decode)
    t_start = t_cap + queue
    t_result = t_start + pre + infer + smooth
    return Result(frame=frame, labels=LABELS, model_size=(4, 6), meta=META, serial=serial, t_start=t_start,
                  preprocess_s=pre, infer_s=infer, smoothing_s=smooth, t_result=t_result,
                  flicker_raw=None if flicker is None else flicker[0],
                  flicker=None if flicker is None else flicker[1])


def test_dist_percentiles_match_numpy_in_ms() -> None:
    d = Dist.of([0.001 * i for i in range(1, 101)])  # 1..100 ms
    assert d.n == 100
    assert d.mean == pytest.approx(50.5)
    assert d.p50 == pytest.approx(50.5)
    assert d.p90 == pytest.approx(90.1)
    assert d.p95 == pytest.approx(95.05)
    assert d.p99 == pytest.approx(99.01)
    assert d.max == pytest.approx(100.0)
    empty = Dist.of([])
    assert empty.n == 0 and math.isnan(empty.p50)


def test_rates_latency_and_stages_from_known_stamps() -> None:
    st = PipelineStats(window_s=10.0, max_samples=1000)
    # 31 frames captured at exactly 30 fps from t=100; every one gets a result 15 ms later
    for i in range(31):
        t = 100.0 + i / 30
        r = make_result(i, t, queue=0.001, pre=0.003, infer=0.010, smooth=0.001)
        st.note_captured(r.frame)
        st.note_result(r)
    # the display shows every 2nd result, 5 ms after it was published
    for i in range(0, 31, 2):
        r = make_result(i, 100.0 + i / 30, queue=0.001, pre=0.003, infer=0.010, smooth=0.001)
        st.note_displayed(r, r.t_result + 0.005)
    snap = st.snapshot(now=102.0)
    assert snap.capture_fps == pytest.approx(30.0)
    assert snap.inference_fps == pytest.approx(30.0)
    assert snap.display_fps == pytest.approx(15.0)
    assert snap.latency.p50 == pytest.approx(15.0) and snap.latency.p99 == pytest.approx(15.0)
    assert snap.frame_age.mean == pytest.approx(20.0)
    assert set(snap.stages) == set(PIPELINE_STAGES) and set(PIPELINE_STAGES) <= set(STAGES)
    assert snap.stages["decode"].mean == pytest.approx(2.0)
    assert snap.stages["queue"].mean == pytest.approx(1.0)
    assert snap.stages["preprocess"].mean == pytest.approx(3.0)
    assert snap.stages["infer"].mean == pytest.approx(10.0)
    assert snap.stages["smoothing"].mean == pytest.approx(1.0)
    assert (snap.captured, snap.results, snap.displayed) == (31, 31, 16)
    # results 1, 3, 5, ..., 29 were published but overtaken before being shown
    assert snap.dropped_superseded == 15
    assert snap.dropped_capture == 0 and snap.dropped == 15
    assert "capture 30.0 fps" in snap.summary() and "dropped 15" in snap.summary()


def test_window_keeps_only_recent_samples() -> None:
    st = PipelineStats(window_s=1.0, max_samples=1000)
    for i in range(20):  # 10 fps for 2 s: t = 0.0 .. 1.9
        r = make_result(i, i / 10, infer=0.050 if i < 10 else 0.020)
        st.note_captured(r.frame)
        st.note_result(r)
    snap = st.snapshot(now=1.97)
    # only stamps in [0.97, 1.97] count: captures 1.0..1.9, results of frames 10..19
    assert snap.capture_fps == pytest.approx(10.0)
    assert snap.stages["infer"].mean == pytest.approx(20.0)
    assert snap.captured == 20  # totals are not windowed


def test_max_samples_bounds_the_window() -> None:
    st = PipelineStats(window_s=100.0, max_samples=10)
    for i in range(50):
        r = make_result(i, float(i), infer=i * 0.001)
        st.note_result(r)
    snap = st.snapshot(now=50.0)
    assert snap.stages["infer"].n == 10
    assert snap.stages["infer"].mean == pytest.approx(44.5)  # samples 40..49 ms


def test_capture_drops_flicker_and_repaint() -> None:
    st = PipelineStats()
    st.note_capture_drops(3)
    st.note_capture_drops()
    r0 = make_result(0, 0.0, flicker=None)
    r1 = make_result(1, 0.1, flicker=(0.20, 0.02))
    r2 = make_result(2, 0.2, flicker=(0.10, 0.04))
    for r in (r0, r1, r2):
        st.note_result(r)
    st.note_displayed(r2, 0.3)
    st.note_displayed(r2, 0.31)  # painted again (resize): not a new display, not a drop
    snap = st.snapshot(now=0.5)
    assert snap.dropped_capture == 4
    assert snap.displayed == 1 and snap.dropped_superseded == 0  # first display: nothing before it counts
    assert snap.flicker_raw == pytest.approx(0.15) and snap.flicker == pytest.approx(0.03)
    st.reset()
    snap = st.snapshot(now=0.5)
    assert snap.dropped == 0 and snap.results == 0 and snap.flicker is None and snap.capture_fps == 0.0


def test_reporting_from_threads_is_consistent() -> None:
    st = PipelineStats(window_s=1e9, max_samples=100)
    n = 2000

    def producer() -> None:
        for _ in range(n):
            st.note_capture_drops(1)

    threads = [threading.Thread(target=producer) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(50):
        st.snapshot()
    for t in threads:
        t.join()
    assert st.snapshot().dropped_capture == 4 * n


def test_bad_window_is_refused() -> None:
    with pytest.raises(ValueError):
        PipelineStats(window_s=0)


def test_stage_samples_cover_a_whole_run_in_the_one_stage_list() -> None:
    """rtseg-run and rtseg-bench report through StageSamples: the pipeline's stamps, the sink's
    own postprocess time, end to end from decode start, device stages when a backend gives them."""
    ss = StageSamples()
    for i in range(10):
        r = make_result(i, 100.0 + i, decode=0.002, queue=0.001, pre=0.003, infer=0.010, smooth=0.001)
        ss.add_result(r, postprocess_s=0.004, t_done=r.t_result + 0.004)
    r = make_result(10, 111.0)
    ss.add_result(Result(**{**{f: getattr(r, f) for f in Result.__dataclass_fields__},
                            "device_s": {"h2d": 0.001, "compute": 0.008, "d2h": 0.0005}}))
    st = ss.summary()
    assert list(st) == [k for k in STAGES if k in st]  # report order is the one stage list
    assert set(st) == set(STAGES)
    assert st["infer"].n == 11 and st["postprocess"].n == 10 and st["compute"].n == 1
    assert st["postprocess"].mean == pytest.approx(4.0)
    # decode start -> sink done: decode 2 + queue 1 + preprocess 3 + infer 10 + smoothing 1 + sink 4 ms
    assert st["end_to_end"].p50 == pytest.approx(21.0)
    table = format_stage_table(st)
    assert table[0].split()[2:8] == ["mean", "p50", "p90", "p95", "p99", "max"]
    assert [line.split()[0] for line in table[1:]] == list(STAGES)
    with pytest.raises(ValueError, match="unknown stage"):
        ss.add("upload", 0.1)
