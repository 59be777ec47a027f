"""Sources on real files, folders, a real HTTP stream and the synthetic generator; error messages."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtseg.core.errors import RtsegError, SourceError
from rtseg.pipeline.sources import (
    ImageFolderSource,
    StreamSource,
    SyntheticSource,
    VideoFileSource,
    open_source,
    redact_url,
)

W, H = 96, 64


def gray_frame(i: int) -> np.ndarray:
    """Frame i is a flat grey of level 10*i (easy to recognise after lossy coding)."""
    return np.full((H, W, 3), 10 * i, np.uint8)


def write_video(path: Path, n: int, fps: float = 25.0, fourcc: str = "mp4v") -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert w.isOpened()
    for i in range(n):
        w.write(gray_frame(i))
    w.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4", 20)


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on localhost serving ``tmp_path/www``."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", root
    srv.shutdown()
    srv.server_close()


def level(frame_image: np.ndarray) -> int:
    return int(round(float(frame_image.mean()) / 10))


# -- video files ----------------------------------------------------------------------------

def test_video_file_reads_every_frame_in_order(video: Path) -> None:
    with open_source(video) as src:
        assert isinstance(src, VideoFileSource)
        assert src.fps == pytest.approx(25.0) and src.frame_count == 20 and not src.is_live
        assert "clip.mp4" in src.describe() and "96x64" in src.describe()
        frames = []
        while (f := src.read()) is not None:
            frames.append(f)
    assert [f.seq for f in frames] == list(range(20))
    assert [f.index for f in frames] == list(range(20))
    assert all(f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [level(f.image) for f in frames] == list(range(20))
    assert all(f.decode_s > 0 for f in frames)
    t = [f.t_capture for f in frames]
    assert t == sorted(t)
    assert src.closed


def test_video_seek(video: Path) -> None:
    with open_source(str(video)) as src:
        src.read()
        src.seek(15)
        f = src.read()
        assert f is not None and f.index == 15 and level(f.image) == 15 and f.seq == 1
        src.seek(0)
        f = src.read()
        assert f is not None and f.index == 0 and level(f.image) == 0
        with pytest.raises(SourceError, match="choose a frame in 0..19"):
            src.seek(20)
        with pytest.raises(SourceError):
            src.seek(-1)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not found; check the path"):
        open_source(tmp_path / "nope.mp4")


def test_not_a_video(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is text, not a video\n" * 20)
    with pytest.raises(SourceError, match="not a video OpenCV can read") as info:
        open_source(bogus)
    assert "\n" not in str(info.value)


def test_read_after_close_is_an_error(video: Path) -> None:
    src = open_source(video)
    src.close()
    src.close()  # idempotent
    with pytest.raises(SourceError, match="after close"):
        src.read()


# -- image folders ---------------------------------------------------------------------------

def test_image_folder_natural_order_fps_and_seek(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (0, 1, 2, 10, 11):  # natural order puts 2 before 10
        cv2.imwrite(str(folder / f"f{i}.png"), gray_frame(i))
    (folder / "readme.txt").write_text("ignored")
    with open_source(folder, fps=5) as src:
        assert isinstance(src, ImageFolderSource)
        assert src.fps == 5.0 and src.frame_count == 5 and not src.is_live
        levels = []
        while (f := src.read()) is not None:
            levels.append(level(f.image))
        assert levels == [0, 1, 2, 10, 11]
        src.seek(3)
        f = src.read()
        assert f is not None and f.index == 3 and level(f.image) == 10


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(SourceError, match="contains no images"):
        open_source(tmp_path / "empty")


def test_unreadable_image_in_folder(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), gray_frame(1))
    (folder / "1.png").write_bytes(b"not a png")
    with open_source(folder) as src:
        assert src.read() is not None
        with pytest.raises(SourceError, match="not a readable image"):
            src.read()


# -- synthetic -------------------------------------------------------------------------------

def test_synthetic_is_deterministic_and_moves() -> None:
    a = open_source("synthetic:96x64", frames=4, fps=50)
    b = SyntheticSource(width=96, height=64, frames=4)
    assert isinstance(a, SyntheticSource) and a.fps == 50.0 and a.frame_count == 4
    fa = [a.read() for _ in range(4)]
    fb = [b.read() for _ in range(4)]
    assert a.read() is None
    assert all(x is not None and y is not None and np.array_equal(x.image, y.image) for x, y in zip(fa, fb, strict=True))
    assert fa[0] is not None and fa[0].image.shape == (64, 96, 3)
    assert not np.array_equal(fa[0].image, fa[3].image)  # things move
    a.seek(2)
    again = a.read()
    assert again is not None and again.index == 2 and np.array_equal(again.image, fa[2].image)


def test_synthetic_period_repeats_cached_frames() -> None:
    src = open_source("synthetic:96x64", period=3, frames=7)
    frames = [src.read() for _ in range(7)]
    assert all(f is not None for f in frames)
    imgs = [f.image for f in frames if f is not None]
    assert np.array_equal(imgs[0], SyntheticSource(width=96, height=64).read().image)  # type: ignore[union-attr]
    assert imgs[3] is imgs[0] and imgs[6] is imgs[0] and imgs[4] is imgs[1]  # rendered once, reused
    assert not np.array_equal(imgs[0], imgs[1])
    assert [f.index for f in frames if f is not None] == list(range(7))
    assert "repeats every 3" in src.describe()
    with pytest.raises(SourceError, match="period"):
        open_source("synthetic", period=0)


def test_synthetic_bad_spec() -> None:
    with pytest.raises(SourceError, match="synthetic:WIDTHxHEIGHT"):
        open_source("synthetic:big")
    with pytest.raises(SourceError, match="16..8192"):
        open_source("synthetic:4x4")


# -- cameras ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [99, "99"])
def test_absent_camera_fails_fast_with_advice(spec: int | str) -> None:
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="camera 99 could not be opened: is another program using it"):
        open_source(spec)
    assert time.monotonic() - t0 < 5.0


def test_negative_camera_index() -> None:
    with pytest.raises(SourceError, match="0 or more"):
        open_source(-1)


# -- URLs ---------------------------------------------------------------------------------------

def test_unsupported_url_scheme() -> None:
    with pytest.raises(SourceError, match=r"unsupported URL scheme ftp://.*use one of rtsp://"):
        open_source("ftp://example.com/video.mp4")


def test_file_url_is_a_path(video: Path) -> None:
    with open_source(video.as_uri()) as src:
        assert isinstance(src, VideoFileSource)


def test_unreachable_stream_fails_with_advice() -> None:
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="could not be opened: check the address"):
        open_source("http://127.0.0.1:9/live.mp4", timeout_ms=1000)  # port 9: nothing listens
    assert time.monotonic() - t0 < 5.0


def test_http_stream_is_live_and_reopens(http_dir: tuple[str, Path]) -> None:
    base, root = http_dir
    write_video(root / "cam.avi", 6, fps=10, fourcc="MJPG")
    with open_source(f"{base}/cam.avi", timeout_ms=2000) as src:
        assert isinstance(src, StreamSource) and src.is_live and src.frame_count is None
        first = [src.read() for _ in range(6)]
        assert all(f is not None and f.index is None for f in first)
        assert src.read() is None  # the "live" stream ended
        with pytest.raises(SourceError, match="is live: seeking works only"):
            src.seek(0)
        src.reopen()  # what the capture thread does on a disconnect
        f = src.read()
        assert f is not None and f.seq == 6 and level(f.image) == 0


def test_password_is_redacted_in_messages() -> None:
    assert redact_url("rtsp://admin:secret@10.0.0.1:554/s") == "rtsp://admin:***@10.0.0.1:554/s"
    with pytest.raises(SourceError) as info:
        open_source("gopher://admin:secret@host/x")
    assert "secret" not in str(info.value)


def test_not_a_source_spec() -> None:
    for bad in ("", "   ", None, 1.5, True):
        with pytest.raises(RtsegError):
            open_source(bad)  # type: ignore[arg-type]
