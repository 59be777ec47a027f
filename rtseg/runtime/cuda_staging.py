"""Host<->device staging shared by the CUDA backends (TensorRT and PyTorch CUDA).

Per backend (so per inference thread):

- two *slots*, each with a pinned host input, a device input, a device output
  and a pinned host output (uint8 frames in, uint8 labels out: H*W bytes per
  frame come back, never logits);
- one compute stream (inference + the labels download) and one upload
  stream. Both belong to the inference thread; the upload stream exists so
  that the H2D copy of frame n+1 runs while frame n computes (double
  buffering); events order them: compute of slot k waits for its upload, and
  the next upload into slot k waits until compute has consumed it;
- CUDA events around each stage, so ``last_timings`` reports H2D, compute and
  D2H of the last finished frame in seconds, the way trtexec splits latency.

Threading: every method is called from the inference thread that owns the
backend. PyTorch's CUDA runtime provides the streams, events and memory
(``torch`` is imported by the caller and passed in, so this module imports
nothing heavy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rtseg.core.errors import BackendError


def require_cuda() -> Any:
    """``torch`` with a usable CUDA device, or a ``BackendError`` that says what is missing."""
    try:
        import torch
    except ImportError:
        raise BackendError("the CUDA backends need PyTorch with CUDA: install a CUDA build of torch, e.g. "
                           "`pip install torch --index-url https://download.pytorch.org/whl/cu128`") from None
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise BackendError(f"no CUDA GPU available to PyTorch ({torch.__version__}, {build}); the CUDA backends "
                           "need an NVIDIA GPU, its driver and a CUDA build of torch")
    return torch


class CudaStaging:
    """Two-slot pinned/device buffers, an upload and a compute stream, per-stage events."""

    SLOTS = 2

    def __init__(self, torch: Any, batch: int, height: int, width: int, device: Any) -> None:
        self.torch = torch
        self.device = device
        self.compute_stream = torch.cuda.Stream(device=device)
        self.upload_stream = torch.cuda.Stream(device=device)
        u8 = torch.uint8
        self.host_in = [torch.empty((batch, height, width, 3), dtype=u8, pin_memory=True) for _ in range(self.SLOTS)]
        self.dev_in = [torch.empty((batch, height, width, 3), dtype=u8, device=device) for _ in range(self.SLOTS)]
        self.dev_out = [torch.empty((batch, height, width), dtype=u8, device=device) for _ in range(self.SLOTS)]
        self.host_out = [torch.empty((batch, height, width), dtype=u8, pin_memory=True) for _ in range(self.SLOTS)]

        def ev() -> Any:
            return torch.cuda.Event(enable_timing=True)

        self.up_start = [ev() for _ in range(self.SLOTS)]
        self.up_end = [ev() for _ in range(self.SLOTS)]
        self.comp_start = [ev() for _ in range(self.SLOTS)]
        self.comp_end = [ev() for _ in range(self.SLOTS)]
        self.down_end = [ev() for _ in range(self.SLOTS)]
        # Recorded when compute has finished reading dev_in[k]; the next upload into k waits on it.
        self.consumed = [torch.cuda.Event() for _ in range(self.SLOTS)]
        self._consumed_recorded = [False] * self.SLOTS
        self.in_flight: list[int] = []  # slots submitted but not yet collected, oldest first
        self._next = 0
        self.last_timings: dict[str, float] = {}

    def submit(self, frames: np.ndarray, run: Callable[[int], None]) -> int:
        """Stage ``frames`` into the next slot and enqueue upload, ``run(slot)`` and download.

        ``run(slot)`` must enqueue the inference on ``compute_stream`` reading
        ``dev_in[slot]`` and writing ``dev_out[slot]``. Returns the slot.
        """
        if len(self.in_flight) >= self.SLOTS:
            raise BackendError("two frames already in flight; collect() one before submitting another")
        k = self._next
        self._next = (k + 1) % self.SLOTS
        torch = self.torch
        # The CPU copy into pinned memory overlaps whatever the GPU is doing; pinned
        # memory makes the following H2D a real asynchronous DMA.
        if self._consumed_recorded[k]:
            self.up_end[k].synchronize()  # the previous H2D of slot k may still be reading host_in[k]
        np.copyto(self.host_in[k].numpy(), frames, casting="no")
        with torch.cuda.stream(self.upload_stream):
            if self._consumed_recorded[k]:
                self.upload_stream.wait_event(self.consumed[k])
            self.up_start[k].record(self.upload_stream)
            self.dev_in[k].copy_(self.host_in[k], non_blocking=True)
            self.up_end[k].record(self.upload_stream)
        with torch.cuda.stream(self.compute_stream):
            self.compute_stream.wait_event(self.up_end[k])
            self.comp_start[k].record(self.compute_stream)
            run(k)
            self.comp_end[k].record(self.compute_stream)
            self.consumed[k].record(self.compute_stream)
            self._consumed_recorded[k] = True
            self.host_out[k].copy_(self.dev_out[k], non_blocking=True)
            self.down_end[k].record(self.compute_stream)
        self.in_flight.append(k)
        return k

    def collect(self) -> np.ndarray:
        """Wait for the oldest submitted slot; return its labels (a copy) and set ``last_timings``."""
        if not self.in_flight:
            raise BackendError("collect() without a submitted frame")
        k = self.in_flight.pop(0)
        self.down_end[k].synchronize()
        ms = 1e-3
        self.last_timings = {
            "h2d": self.up_start[k].elapsed_time(self.up_end[k]) * ms,
            "compute": self.comp_start[k].elapsed_time(self.comp_end[k]) * ms,
            "d2h": self.comp_end[k].elapsed_time(self.down_end[k]) * ms,
        }
        self.last_timings["total"] = self.up_start[k].elapsed_time(self.down_end[k]) * ms
        return self.host_out[k].numpy().copy()

    def drain(self) -> None:
        while self.in_flight:
            self.collect()
