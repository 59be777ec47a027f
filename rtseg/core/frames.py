"""What travels through the live pipeline: captured ``Frame`` and published ``Result``.

Every time stamp is ``time.perf_counter()`` (monotonic, sub-microsecond) so
stats can subtract stamps taken on different threads. Durations are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtseg.core.meta import ModelMeta


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
    infer_s: float  # backend.infer, including host<->device copies
    smoothing_s: float  # temporal smoothing + flicker measurement (0 when off)
    t_result: float  # perf_counter() just before the result is published
    #: Share of pixels whose class changed since the previous result of the same
    #: epoch: ``flicker_raw`` on the network output, ``flicker`` on what is shown
    #: (equal when smoothing is off); None for the first result of an epoch.
    flicker_raw: float | None = None
    flicker: float | None = None
    smoothing_k: int = 0  # hysteresis frames applied (0 = off)

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
