"""What travels through the live pipeline: captured ``Frame`` and published ``Result``.

Every time stamp is ``time.perf_counter()`` (monotonic, sub-microsecond) so
stats can subtract stamps taken on different threads. Durations are seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from rtseg.core.meta import ModelMeta

#: Extensions (lower case) of the image files a folder of frames or a dataset may hold: the
#: one list the image-folder source, calibration and the dataset readers all use.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


def resize_to_model(image: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """A BGR frame at the model input ``size`` (H, W), resized the one way rtseg does it:
    OpenCV linear. The live pipeline, the benchmark, calibration, parity checks and
    evaluation all call this, so they feed every model the same pixels.

    ``out`` (uint8 ``[H, W, 3]``): write there instead of allocating. A frame already at
    ``size`` is returned as is (or copied into ``out``).
    """
    h, w = size
    if image.shape[:2] == (h, w):
        if out is None:
            return image
        np.copyto(out, image)
        return out
    import cv2  # here, not at module level: importing rtseg.core stays cheap

    if out is None:
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    cv2.resize(image, (w, h), dst=out, interpolation=cv2.INTER_LINEAR)
    return out


@dataclass(slots=True)
class Frame:
    """One captured image.

    Created by a source on the capture thread. The capture thread may still set
    ``epoch`` before it hands the frame on; after that every thread treats the
    frame as read-only (nobody copies the image, so nobody may write to it).
    """

    seq: int  # increments per frame read from one source (0, 1, 2...)
    t_capture: float  # perf_counter() when the decoded image became available
    image: np.ndarray  # uint8 BGR [H, W, 3]
    index: int | None = None  # position in a file or folder; None for live sources
    decode_s: float = 0.0  # time spent reading + decoding this frame
    #: Changes whenever consecutive frames stop being neighbours in time (new
    #: source, seek, loop wrap-around, reconnect); temporal smoothing and the
    #: flicker figure restart when it changes.
    epoch: int = 0

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True, slots=True)
class Result:
    """Labels for one frame, with the time every stage took.

    Built and published by the inference thread; read-only afterwards, so the
    GUI thread may keep it while the pipeline moves on.
    """

    frame: Frame
    labels: np.ndarray  # uint8 [h, w] at the model's input size (after smoothing when enabled)
    model_size: tuple[int, int]  # (h, w) the labels have
    meta: ModelMeta
    serial: int  # increments per published result across the pipeline's life (superseded-drop counting)
    t_start: float  # perf_counter() when the inference thread took the frame from the mailbox
    preprocess_s: float  # resize to the model input
    #: backend submit -> labels back, including host<->device copies; with two frames in
    #: flight (double buffering) this is the frame's whole time in flight
    infer_s: float
    smoothing_s: float  # temporal smoothing + flicker measurement (0 when off)
    t_result: float  # perf_counter() just before the result is published
    #: Share of pixels whose class changed since the previous result of the same
    #: epoch: ``flicker_raw`` on the network output, ``flicker`` on what is shown
    #: (equal when smoothing is off); None for the first result of an epoch.
    flicker_raw: float | None = None
    flicker: float | None = None
    smoothing_k: int = 0  # hysteresis frames applied (0 = off)
    #: device stages of the backend for this frame in seconds (CUDA backends: h2d, compute, d2h)
    device_s: Mapping[str, float] = field(default_factory=dict)

    @property
    def decode_s(self) -> float:
        return self.frame.decode_s

    @property
    def queue_s(self) -> float:
        """Time the frame waited in the mailbox before the inference thread took it."""
        return self.t_start - self.frame.t_capture

    @property
    def latency_s(self) -> float:
        """Capture -> result (end-to-end, excluding display)."""
        return self.t_result - self.frame.t_capture
