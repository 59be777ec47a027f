"""A few frames of a video or image folder, at the model input size: the one frame reader of the
offline checks (INT8 calibration, precision parity, engine verification).

Built on the pipeline's own sources and resize (``open_source``,
``resize_to_model``), so a check sees exactly the pixels the live pipeline
would feed the model, from the same decoders and the same image-file list.

Threading: runs on the calling thread, which owns the source it opens.
"""

from __future__ import annotations

import os

import numpy as np

from rtseg.core.errors import SourceError, UserInputError
from rtseg.core.frames import resize_to_model
from rtseg.pipeline.sources import ImageFolderSource, Source, VideoFileSource, open_source


def read_frames(source: str | os.PathLike[str], input_size: tuple[int, int], max_frames: int) -> np.ndarray:
    """Up to ``max_frames`` uint8 BGR frames ``[N,H,W,3]`` at ``input_size`` from a video or folder.

    Frames are spread evenly over the video (or the folder's images, in natural
    order), so a long clip is sampled across its length rather than just its
    first seconds. Cameras, streams and the synthetic source are refused: a
    check must be repeatable.
    """
    if max_frames < 1:
        raise UserInputError(f"need at least 1 frame, got max_frames={max_frames}")
    path = os.fspath(source)
    if not os.path.exists(path):
        raise UserInputError(f"frame source {path} does not exist; pass a video file or a folder of images")
    try:
        src = open_source(path)
    except SourceError as exc:
        raise UserInputError(str(exc)) from None
    try:
        if not isinstance(src, (VideoFileSource, ImageFolderSource)):
            raise UserInputError(f"{src.describe()} is not a video file or image folder; pass one of those")
        frames = _spread(src, input_size, max_frames)
    finally:
        src.close()
    if not frames:
        raise UserInputError(f"{path} has no readable frames")
    return np.stack(frames)


def _spread(src: Source, size: tuple[int, int], max_frames: int) -> list[np.ndarray]:
    total = src.frame_count or 0
    out: list[np.ndarray] = []
    if isinstance(src, ImageFolderSource):
        step = max(1, total // max_frames)
        for i in range(0, total, step)[:max_frames]:
            src.seek(i)
            frame = src.read()
            if frame is not None:
                out.append(resize_to_model(frame.image, size))
        return out
    # A video is read front to back (decoding forward is exact on every codec, a seek is
    # not always), keeping the evenly spaced frames; without a frame count, the first ones.
    wanted = set(np.linspace(0, total - 1, num=min(max_frames, total)).astype(int).tolist()) if total > 0 else None
    i = 0
    while len(out) < max_frames:
        frame = src.read()
        if frame is None:
            break
        if wanted is None or i in wanted:
            out.append(resize_to_model(frame.image, size))
        i += 1
    return out
