"""The live pipeline end to end: real video files, folders, an HTTP stream, and a real ONNX
Runtime backend on a small exported BiSeNetV2 (random weights, 64x96)."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from rtseg.core.errors import BackendError, RtsegError, SourceError, UserInputError
from rtseg.core.frames import Result
from rtseg.pipeline.sources import SyntheticSource, open_source
from rtseg.pipeline.worker import Pipeline, reconnect_delays
from rtseg.runtime.base import Backend

MODEL_H, MODEL_W = 64, 96
VID_W, VID_H = 160, 128  # frames differ from the model size, so the resize runs
WAIT = 20.0  # upper bound for anything to happen; tests wait on events, never on sleeps


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rtseg.export.artifacts import ensure_onnx

    path, _ = ensure_onnx("bisenetv2", None, input_size=(MODEL_H, MODEL_W), num_classes=19,
                          out_dir=tmp_path_factory.mktemp("onnx"))
    return path


@pytest.fixture
def factory(onnx_model: Path) -> Callable[[], Backend]:
    from rtseg.runtime.factory import create_backend

    return lambda: create_backend("onnxruntime", onnx_model, threads=1)


def write_video(path: Path, n: int, fps: float = 25.0, fourcc: str = "mp4v") -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (VID_W, VID_H))
    assert w.isOpened()
    for i in range(n):
        img = np.full((VID_H, VID_W, 3), 10 * i, np.uint8)
        cv2.rectangle(img, (5 * i, 20), (5 * i + 30, 60), (0, 0, 255), -1)
        w.write(img)
    w.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4", 20)


class Recorder:
    """Collects callbacks (called on pipeline threads) and lets the test wait on them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.results: list[Result] = []
        self.errors: list[RtsegError] = []
        self.status: list[str] = []
        self.ends = 0
        self.threads: set[str] = set()

    def on_result(self, r: Result) -> None:
        with self.cond:
            self.results.append(r)
            self.threads.add(threading.current_thread().name)
            self.cond.notify_all()

    def on_error(self, e: RtsegError) -> None:
        with self.cond:
            self.errors.append(e)
            self.cond.notify_all()

    def on_status(self, s: str) -> None:
        with self.cond:
            self.status.append(s)
            self.cond.notify_all()

    def on_end(self) -> None:
        with self.cond:
            self.ends += 1
            self.cond.notify_all()

    def wait(self, pred: Callable[[Recorder], Any], timeout: float = WAIT) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: pred(self), timeout)
        assert ok, f"timed out; results={len(self.results)} errors={self.errors} status={self.status[-5:]}"

    def pipeline(self, **kw: Any) -> Pipeline:
        return Pipeline(self.on_result, self.on_error, self.on_status, self.on_end, **kw)


@pytest.fixture
def rec() -> Iterator[Recorder]:
    yield Recorder()


# -- benchmark mode, end of stream ---------------------------------------------------------------

def test_benchmark_mode_gives_every_frame_in_order(video: Path, factory: Callable[[], Backend],
                                                   rec: Recorder) -> None:
    made_in: list[str] = []

    def tracking_factory() -> Backend:
        made_in.append(threading.current_thread().name)
        return factory()

    with rec.pipeline() as p:
        p.start(video, tracking_factory, mode="benchmark")
        rec.wait(lambda r: r.ends == 1)
        snap = p.stats.snapshot()
        assert p.meta is not None and p.meta.model == "bisenetv2"
        assert p.backend_info is not None and p.backend_info.backend == "onnxruntime"
    assert made_in == ["rtseg-inference"]  # the backend is created on the thread that runs it
    assert rec.threads == {"rtseg-inference"}
    assert [r.frame.seq for r in rec.results] == list(range(20))
    assert [r.frame.index for r in rec.results] == list(range(20))
    assert snap.captured == 20 and snap.results == 20 and snap.dropped_capture == 0
    r = rec.results[-1]
    assert r.labels.shape == (MODEL_H, MODEL_W) and r.labels.dtype == np.uint8
    assert r.model_size == (MODEL_H, MODEL_W) and r.frame.image.shape == (VID_H, VID_W, 3)
    assert int(r.labels.max()) < 19
    assert r.infer_s > 0 and r.preprocess_s > 0 and r.t_result >= r.t_start >= r.frame.t_capture
    assert any("end of video clip.mp4" in s for s in rec.status)
    assert not rec.errors


def test_fast_mode_accounts_for_every_frame(factory: Callable[[], Backend], rec: Recorder) -> None:
    with rec.pipeline() as p:
        p.start("synthetic:160x128", factory, mode="fast", frames=120)
        rec.wait(lambda r: r.ends == 1)
        snap = p.stats.snapshot()
    # every captured frame either produced a result or was replaced in the mailbox
    assert snap.captured == 120
    assert snap.results + snap.dropped_capture == 120
    assert len(rec.results) == snap.results
    seqs = [r.frame.seq for r in rec.results]
    assert seqs == sorted(seqs) and seqs[-1] == 119  # the newest always wins, the last is never dropped


def test_realtime_mode_paces_to_the_file_fps(tmp_path: Path, factory: Callable[[], Backend],
                                             rec: Recorder) -> None:
    clip = write_video(tmp_path / "slow.mp4", 10, fps=20.0)
    with rec.pipeline() as p:
        # start paused so model loading is over before the clock starts
        p.start(clip, factory, mode="realtime", paused=True)
        rec.wait(lambda r: len(r.results) == 1)
        p.resume()
        rec.wait(lambda r: r.ends == 1)
    first, last = rec.results[1].frame, rec.results[-1].frame
    assert last.index == 9 and first.index is not None
    # n frames apart at 20 fps means >= n * 50 ms apart; a reader that did not pace
    # would take about a millisecond per frame
    assert last.index - first.index >= 4
    assert last.t_capture - first.t_capture >= 0.9 * (last.index - first.index) / 20



def test_a_file_waits_for_its_model_before_playing(tmp_path: Path, factory: Callable[[], Backend],
                                                   rec: Recorder) -> None:
    # A model that takes 0.5 s to load (OpenVINO compiles for seconds): a realtime
    # file that started playing at once would drop its first ~12 frames unseen.
    clip = write_video(tmp_path / "clip25.mp4", 20, fps=25.0)

    def slow_loading() -> Backend:
        time.sleep(0.5)
        return factory()

    with rec.pipeline() as p:
        p.start(clip, slow_loading, mode="realtime")
        rec.wait(lambda r: r.ends == 1)
        snap = p.stats.snapshot()
    assert rec.results[0].frame.index == 0
    assert snap.captured == 20 and rec.results[-1].frame.index == 19
    assert not rec.errors


def test_image_folder_in_benchmark_mode(tmp_path: Path, factory: Callable[[], Backend],
                                        rec: Recorder) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(7):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), np.full((VID_H, VID_W, 3), 30 * i, np.uint8))
    with rec.pipeline() as p:
        p.start(folder, factory, mode="benchmark", fps=5)
        rec.wait(lambda r: r.ends == 1)
    assert [r.frame.index for r in rec.results] == list(range(7))


def test_loop_wraps_around_with_a_new_epoch(tmp_path: Path, factory: Callable[[], Backend],
                                            rec: Recorder) -> None:
    clip = write_video(tmp_path / "short.mp4", 4)
    with rec.pipeline() as p:
        p.start(clip, factory, mode="benchmark", loop=True)
        rec.wait(lambda r: len(r.results) >= 10)
    got = rec.results[:10]
    assert [r.frame.index for r in got] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert [r.frame.seq for r in got] == list(range(10))  # seq keeps counting across loops
    assert got[3].frame.epoch != got[4].frame.epoch  # smoothing restarts at the wrap
    assert got[4].flicker_raw is None
    assert rec.ends == 0


# -- playback control --------------------------------------------------------------------------

def test_pause_step_seek_resume(video: Path, factory: Callable[[], Backend], rec: Recorder) -> None:
    with rec.pipeline() as p:
        p.start(video, factory, mode="fast", paused=True)
        rec.wait(lambda r: len(r.results) == 1)  # a paused start shows the first frame
        assert rec.results[0].frame.index == 0 and p.paused
        p.step()
        rec.wait(lambda r: len(r.results) == 2)
        assert rec.results[1].frame.index == 1
        p.seek(12)
        rec.wait(lambda r: len(r.results) == 3)  # seeking while paused shows the target
        assert rec.results[2].frame.index == 12
        assert rec.results[2].frame.epoch != rec.results[1].frame.epoch  # smoothing restarts
        with pytest.raises(SourceError, match="choose a frame in 0..19"):
            p.seek(50)
        p.resume()
        rec.wait(lambda r: r.ends == 1)
        assert rec.results[-1].frame.index == 19
        indices = [r.frame.index for r in rec.results[3:]]
        assert indices == sorted(indices) and indices[0] >= 13
        # after the end, seeking back plays again
        p.seek(18)
        rec.wait(lambda r: r.ends == 2)
        assert rec.results[-1].frame.index == 19
    assert not rec.errors


def test_pause_holds_a_playing_file(factory: Callable[[], Backend], rec: Recorder) -> None:
    with rec.pipeline() as p:
        p.start("synthetic:96x64", factory, mode="realtime", fps=100)
        rec.wait(lambda r: len(r.results) >= 3)
        p.pause()
        assert p.mailbox.wait_empty(timeout=WAIT)
        n = len(rec.results)
        # Playing, 100 fps would add ~30 results in 0.3 s. Paused, at most the frame in
        # inference and one frame that was being read when pause() came still arrive.
        with rec.cond:
            assert not rec.cond.wait_for(lambda: len(rec.results) > n + 2, 0.3)
        n = len(rec.results)
        p.step()
        rec.wait(lambda r: len(r.results) == n + 1)
        p.resume()
        rec.wait(lambda r: len(r.results) >= n + 5)


# -- switching ---------------------------------------------------------------------------------

def test_switch_source_while_running(video: Path, factory: Callable[[], Backend], rec: Recorder) -> None:
    synth = SyntheticSource(width=96, height=64, fps=50)
    with rec.pipeline() as p:
        p.start(synth, factory, mode="realtime")
        rec.wait(lambda r: len(r.results) >= 2)
        assert p.switch_source(video)
        assert synth.closed  # the old source was released
        rec.wait(lambda r: r.results[-1].frame.image.shape == (VID_H, VID_W, 3))
        rec.wait(lambda r: r.ends == 1)
        assert p.source is not None and "clip.mp4" in p.source.describe()
    assert not rec.errors


def test_switch_source_while_paused_shows_the_new_first_frame(video: Path, tmp_path: Path,
                                                              factory: Callable[[], Backend],
                                                              rec: Recorder) -> None:
    other = write_video(tmp_path / "other.mp4", 5)
    with rec.pipeline() as p:
        p.start(video, factory, mode="fast", paused=True)
        rec.wait(lambda r: len(r.results) == 1)
        p.switch_source(other)
        rec.wait(lambda r: len(r.results) == 2)
        assert p.paused and rec.results[1].frame.index == 0
        assert p.source is not None and "other.mp4" in p.source.describe()
        p.step()
        rec.wait(lambda r: len(r.results) == 3)
        assert rec.results[2].frame.index == 1


def test_bad_source_reports_and_switch_recovers(video: Path, factory: Callable[[], Backend],
                                                rec: Recorder) -> None:
    with rec.pipeline() as p:
        p.start(Path(video.parent / "missing.mp4"), factory)
        rec.wait(lambda r: len(r.errors) == 1)
        assert isinstance(rec.errors[0], SourceError) and "not found" in str(rec.errors[0])
        p.switch_source(video)
        rec.wait(lambda r: r.ends == 1)
        assert len(rec.results) > 0


def test_model_that_fails_to_load_keeps_the_pipeline_usable(video: Path, factory: Callable[[], Backend],
                                                            rec: Recorder, tmp_path: Path) -> None:
    from rtseg.runtime.factory import create_backend

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with rec.pipeline() as p:
        p.start(video, lambda: create_backend("onnxruntime", broken), mode="realtime", loop=True)
        rec.wait(lambda r: len(r.errors) == 1)
        assert isinstance(rec.errors[0], RtsegError) and "\n" not in str(rec.errors[0])
        assert p.running and not rec.results
        assert p.switch_model(factory)
        rec.wait(lambda r: len(r.results) >= 3)
        # a factory raising a plain bug is wrapped, not propagated
        assert p.switch_model(lambda: 1 / 0)  # type: ignore[arg-type,return-value]
        rec.wait(lambda r: len(r.errors) == 2)
        assert "ZeroDivisionError" in str(rec.errors[1])

        def multiline() -> Backend:
            raise RuntimeError("first line\nsecond line\nthird")

        p.switch_model(multiline)
        rec.wait(lambda r: len(r.errors) == 3)
        assert str(rec.errors[2]).endswith("RuntimeError: first line")  # one line for the window
        p.switch_model(factory)
        n = len(rec.results)
        rec.wait(lambda r: len(r.results) >= n + 3)


def test_factory_must_return_a_backend(video: Path, rec: Recorder) -> None:
    with rec.pipeline() as p:
        p.start(video, lambda: "not a backend")  # type: ignore[arg-type,return-value]
        rec.wait(lambda r: len(r.errors) == 1)
        assert isinstance(rec.errors[0], BackendError)


def test_callback_errors_are_reported_not_fatal(video: Path, factory: Callable[[], Backend],
                                                rec: Recorder) -> None:
    calls = []

    def flaky(r: Result) -> None:
        calls.append(r)
        if len(calls) == 1:
            raise ValueError("boom")
        rec.on_result(r)

    p = Pipeline(flaky, rec.on_error, rec.on_status, rec.on_end)
    try:
        p.start(video, factory, mode="benchmark")
        rec.wait(lambda r: r.ends == 1)
    finally:
        p.stop()
    assert len(calls) == 20 and len(rec.results) == 19
    assert len(rec.errors) == 1 and "boom" in str(rec.errors[0])


# -- stop -------------------------------------------------------------------------------------------

def test_stop_joins_within_a_second_and_closes_the_file(video: Path, factory: Callable[[], Backend],
                                                        rec: Recorder) -> None:
    src = open_source(video)
    p = rec.pipeline()
    p.start(src, factory, mode="realtime", loop=True)
    rec.wait(lambda r: len(r.results) >= 3)
    t0 = time.monotonic()
    assert p.stop()
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, elapsed
    assert src.closed
    assert not p.running
    assert not [t for t in threading.enumerate() if t.name.startswith("rtseg-")]
    n = len(rec.results)
    p.stop()  # idempotent
    assert len(rec.results) == n
    with pytest.raises(UserInputError):
        p.switch_source(video)


def test_stop_while_benchmark_put_is_blocked(factory: Callable[[], Backend], rec: Recorder) -> None:
    # benchmark mode with an endless source: the capture thread spends its life blocked in put()
    p = rec.pipeline()
    p.start("synthetic:96x64", factory, mode="benchmark")
    rec.wait(lambda r: len(r.results) >= 3)
    t0 = time.monotonic()
    assert p.stop()
    assert time.monotonic() - t0 < 1.0


# -- smoothing and stats through the pipeline ------------------------------------------------------

def test_smoothing_setting_reaches_results_and_stats(video: Path, factory: Callable[[], Backend],
                                                     rec: Recorder) -> None:
    with rec.pipeline() as p:
        p.start(video, factory, mode="benchmark", smoothing=3)
        rec.wait(lambda r: r.ends == 1)
        snap = p.stats.snapshot()
        with pytest.raises(UserInputError):
            p.set_smoothing(-1)
    assert all(r.smoothing_k == 3 for r in rec.results)
    assert rec.results[0].flicker is None and rec.results[1].flicker is not None
    assert snap.flicker is not None and snap.flicker_raw is not None
    print(f"flicker raw {snap.flicker_raw:.4f} shown {snap.flicker:.4f}")
    # per pixel, every shown change needs at least one raw change since the previous shown one,
    # so over a whole sequence what is shown changes less than the raw output
    assert snap.flicker <= snap.flicker_raw
    assert snap.latency.n == 20 and snap.stages["infer"].n == 20
    # displaying every 2nd result: the others count as superseded
    st = p.stats
    st.reset()
    for r in rec.results[::2]:
        st.note_displayed(r)
    assert st.snapshot().dropped_superseded == 9


# -- live sources ----------------------------------------------------------------------------------

@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", root
    srv.shutdown()
    srv.server_close()


def test_live_stream_reconnects_after_it_ends(http_root: tuple[str, Path], factory: Callable[[], Backend],
                                              rec: Recorder) -> None:
    base, root = http_root
    write_video(root / "cam.avi", 5, fps=25, fourcc="MJPG")
    with rec.pipeline() as p:
        p.start(f"{base}/cam.avi", factory, timeout_ms=2000)
        rec.wait(lambda r: any("reconnected" in s for s in r.status))
        assert any("stopped delivering frames; reconnecting in 0.5 s" in s for s in rec.status)
        with pytest.raises(SourceError, match="is live"):
            p.seek(0)
        with pytest.raises(SourceError, match="is live"):
            p.step()
        rec.wait(lambda r: len({res.frame.epoch for res in r.results}) >= 2)  # frames after reconnecting
        assert all(res.frame.index is None for res in rec.results)
    assert rec.ends == 0  # a live source never "ends"


def test_reconnect_backoff_doubles_up_to_the_cap() -> None:
    gen = reconnect_delays(0.5, 8.0)
    assert [next(gen) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_start_validates_arguments(video: Path, factory: Callable[[], Backend], rec: Recorder) -> None:
    p = rec.pipeline()
    with pytest.raises(UserInputError, match="mode"):
        p.start(video, factory, mode="turbo")
    with pytest.raises(UserInputError, match="smoothing"):
        p.start(video, factory, smoothing=1000)
    with pytest.raises(UserInputError, match="callable"):
        p.start(video, "model.onnx")  # type: ignore[arg-type]
    p.start(video, factory, mode="benchmark")
    try:
        with pytest.raises(UserInputError, match="already running"):
            p.start(video, factory)
    finally:
        assert p.stop()


# -- a replaced model that is still loading stays silent ----------------------------------------------

@pytest.mark.parametrize("late", ["fails", "loads"])
def test_a_replaced_model_still_loading_reports_nothing(video: Path, onnx_model: Path, factory: Callable[[], Backend],
                                                        rec: Recorder, late: str) -> None:
    """switch_model away from a model whose factory is still running (an export, a compile): when it
    finally fails or loads, its status and errors must not reach the window, and its backend is released."""
    from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend

    release = threading.Event()
    made: list[Backend] = []

    def slow() -> Backend:  # the old model: still "loading" when the user switches away
        assert release.wait(WAIT)
        if late == "fails":
            raise BackendError("the OLD model failed")
        made.append(OnnxRuntimeBackend(onnx_model, threads=1))
        return made[-1]

    with rec.pipeline(stop_timeout=0.2) as p:
        p.start(video, slow, mode="realtime", loop=True)
        time.sleep(0.1)  # the old inference thread is inside slow()
        assert not p.switch_model(factory)  # the old thread does not end in time: abandoned
        rec.wait(lambda r: len(r.results) >= 3)
        old = [t for t in threading.enumerate() if t.name == "rtseg-inference" and t is not p._inference]
        assert len(old) == 1
        release.set()
        old[0].join(WAIT)
        assert not old[0].is_alive()
        n = len(rec.results)
        rec.wait(lambda r: len(r.results) >= n + 3)
    assert not rec.errors, rec.errors
    assert sum(s.startswith("model ") for s in rec.status) == 1, rec.status  # only the current model's
    assert not any("no model loaded" in s or "inference stopped" in s for s in rec.status)
    assert all(not be.active for be in made)  # a late-loaded backend is released, not left running


# -- the asynchronous backend protocol in the inference thread ---------------------------------------

@pytest.mark.parametrize("requests,streams", [(2, 1), (3, 2)])
def test_the_inference_thread_keeps_frames_in_flight_when_the_backend_offers_it(
        video: Path, onnx_model: Path, rec: Recorder, requests: int, streams: int) -> None:
    """Two requests (double buffering) or three behind OpenVINO's two streams (benchmark mode)."""
    from rtseg.runtime.openvino_backend import OpenVinoBackend

    class Probe(OpenVinoBackend):
        """OpenVINO with async infer requests, noting how many frames were in flight at once."""

        most = 0

        def _submit(self, frames: np.ndarray) -> None:
            super()._submit(frames)
            Probe.most = max(Probe.most, self.in_flight + 1)

    with rec.pipeline() as p:
        p.start(video, lambda: Probe(onnx_model, threads=2, requests=requests, streams=streams), mode="benchmark")
        rec.wait(lambda r: r.ends == 1)
    assert Probe.most == requests  # submit n+1 before collect n: inference overlaps the rest of the loop
    assert [r.frame.index for r in rec.results] == list(range(20))  # every frame, in capture order
    # the same labels as one synchronous request on the same frames
    from rtseg.core.frames import resize_to_model

    with OpenVinoBackend(onnx_model, threads=1) as sync:
        for r in rec.results[:5]:
            want = sync.infer(resize_to_model(r.frame.image, (MODEL_H, MODEL_W))[None])[0]
            assert np.array_equal(r.labels, want)


def test_the_async_protocol_by_hand(onnx_model: Path) -> None:
    """submit/collect in order, at most max_in_flight; infer refused while batches are in flight."""
    from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from rtseg.runtime.openvino_backend import OpenVinoBackend

    frames = [np.full((1, MODEL_H, MODEL_W, 3), 40 * i, np.uint8) for i in range(3)]
    for be, depth in ((OnnxRuntimeBackend(onnx_model, threads=1), 1), (OpenVinoBackend(onnx_model, requests=2), 2)):
        with be:
            assert be.max_in_flight == depth
            want = [be.infer(f) for f in frames]
            buf = frames[0].copy()
            be.submit(buf)
            buf[:] = frames[1]  # the backend took its own copy: reusing the buffer is allowed
            if depth == 2:
                be.submit(buf)
            with pytest.raises(BackendError, match="in flight"):
                be.submit(frames[2])
            with pytest.raises(BackendError, match="collect"):
                be.infer(frames[2])
            assert np.array_equal(be.collect(), want[0])
            if depth == 2:
                assert np.array_equal(be.collect(), want[1])
            with pytest.raises(BackendError, match="without a submitted batch"):
                be.collect()
            be.submit(frames[2])
        assert be.in_flight == 0  # deactivate dropped the uncollected one


# -- the headless runner (rtseg-run, rtseg-bench): stops cleanly, fails fast -----------------------

def test_a_consumer_that_stops_early_never_traps_the_inference_thread(onnx_model: Path) -> None:
    """rtseg-run --max-frames: the consumer stops while results are still coming; the inference thread
    (blocked on a full sink) is released, stop() joins it and the backend is deactivated."""
    from rtseg.pipeline.headless import run_headless
    from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend

    made: list[Backend] = []

    def make() -> Backend:
        made.append(OnnxRuntimeBackend(onnx_model, threads=1))
        return made[-1]

    def slow_consumer(r: Result) -> None:
        # Far slower than a 64x96 inference, so the one-slot sink is full and the inference thread
        # waits in put() when the consumer stops: the case that used to hang stop().
        time.sleep(0.25)

    t0 = time.monotonic()
    rep = run_headless("synthetic:96x64", make, slow_consumer, mode="benchmark", max_results=3, capacity=1,
                       stop_timeout=5.0, frames=500)
    assert rep.results == 3 and rep.stopped_cleanly
    assert time.monotonic() - t0 < 5.0
    assert len(made) == 1 and not made[0].active
    assert not [t for t in threading.enumerate() if t.name.startswith("rtseg-")]


def test_a_backend_failing_mid_run_ends_the_benchmark_at_once(onnx_model: Path) -> None:
    """The benchmark's error path: a failing infer ends the run in well under a second or two (it used
    to join its threads before closing their mailboxes and stall for about a minute)."""
    from rtseg.benchmark.runner import overlay_sink
    from rtseg.pipeline.headless import run_headless
    from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend

    class FailsAfter(OnnxRuntimeBackend):
        """Real ONNX Runtime inference that breaks (like a lost device) after a few frames."""

        def _infer(self, frames: np.ndarray) -> np.ndarray:
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls > 4:
                raise BackendError("the device went away")
            return super()._infer(frames)

    t0 = time.monotonic()
    with pytest.raises(BackendError, match="the device went away"):  # rtseg-bench's end-to-end run
        run_headless("synthetic:96x64", lambda: FailsAfter(onnx_model, threads=1), overlay_sink(),
                     mode="benchmark", loop=True, warmup=1, max_results=200, period=24)
    assert time.monotonic() - t0 < 5.0
    assert not [t for t in threading.enumerate() if t.name.startswith("rtseg-")]


def test_inference_only_in_flight_counts_results_with_the_queue_full(onnx_model: Path) -> None:
    """rtseg-bench's ceiling with several in flight (real OpenVINO async requests): every measured
    result is collected with the queue full, as in the end-to-end run it is compared with, the
    measured count is ``iters``, and nothing is left in flight afterwards."""
    from rtseg.benchmark.runner import measure_inference_only
    from rtseg.runtime.openvino_backend import OpenVinoBackend

    class Recorded(OpenVinoBackend):
        """OpenVINO with two requests, noting how many batches were in flight at each collect."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.at_collect: list[int] = []

        def _collect(self) -> np.ndarray:
            self.at_collect.append(self.in_flight)
            return super()._collect()

    frames = np.random.default_rng(0).integers(0, 255, (4, MODEL_H, MODEL_W, 3), np.uint8)
    with Recorded(onnx_model, requests=2, threads=1) as be:
        fps, times = measure_inference_only(be, frames, warmup=1, iters=6)
        assert be.in_flight == 0
    assert len(times) == 6 and fps > 0 and all(t > 0 for t in times)
    # first result (clock starts), the 6 measured ones, then the drain of the last two
    assert be.at_collect == [2] + [2] * 6 + [2, 1]
