"""PyTorch CUDA backend: the deploy graph on an NVIDIA GPU, FP16 autocast, channels-last,
optional CUDA graph capture, pinned double-buffered staging and per-stage timings.

    with TorchCudaBackend(None, model="stdc1", input_size=(360, 480), precision="fp16",
                          cuda_graph=True) as be:          # inference thread
        labels = be.infer(frames)                            # uint8 [N,H,W,3] -> uint8 [N,H,W]
        be.last_timings                                      # {"h2d", "compute", "d2h", "total"} seconds

- FP16 through ``torch.autocast``: convolutions run in FP16 while PyTorch's
  autocast keeps reductions, softmax and other precision-sensitive ops in
  FP32 - the same split as the mixed-precision ONNX for TensorRT.
- channels-last (NHWC) weights and activations: what tensor cores want; the
  frames already arrive NHWC, so the input permute is free.
- ``cuda_graph=True`` records the whole graph (normalise -> network -> argmax)
  once per staging slot on static buffers and replays it: one launch per
  frame instead of hundreds of kernel launches.
- staging, streams and events: ``cuda_staging.CudaStaging`` (two slots, the
  next upload overlaps the current inference).

Asynchronous protocol: ``max_in_flight`` is 2 (the staging slots), so the
pipeline's inference thread submits frame n+1 while frame n computes.

``activate`` moves a *copy* of the CPU model to the GPU (``nn.Module.to``
moves in place), so ``deactivate`` really frees the GPU weights: nothing on
the device outlives it.

Threading: construct anywhere; ``activate``/``infer``/``submit``/``collect``/
``deactivate`` only from the inference thread that owns the backend.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from rtseg.core.errors import BackendError
from rtseg.core.meta import ModelMeta
from rtseg.core.precision import Precision
from rtseg.runtime.base import Backend, BackendInfo


class TorchCudaBackend(Backend):
    """``DeployGraph(model)`` on CUDA at FP16 (autocast) or FP32."""

    kind = "torch-cuda"
    precisions = (Precision.FP16, Precision.F32)

    def __init__(self, weights: str | Path | None, *, model: str | None = None, num_classes: int | None = None,
                 input_size: tuple[int, int] | None = None, batch: int = 1, precision: str | None = None,
                 threads: int | None = None, cuda_graph: bool = False, channels_last: bool = True,
                 device_index: int | None = None) -> None:
        super().__init__()
        self._precision = self.choose_precision(precision)
        if weights is None and model is None:
            raise BackendError("the torch-cuda backend needs --model NAME and/or --weights PATH")
        self._weights = Path(weights) if weights is not None else None
        self._model_name = model
        self._num_classes = num_classes
        self._input_size = input_size
        self._batch = batch
        self._cuda_graph = cuda_graph
        self._channels_last = channels_last
        self._device_index = device_index
        self._meta: ModelMeta | None = None
        self._loaded: Any = None
        self._graph: Any = None
        self._torch: Any = None
        self._staging: Any = None
        self._cuda_graphs: list[Any] = []
        self._load()  # CPU side, so metadata is known before activate()

    def _load(self) -> None:
        from rtseg.models.deploy import check_input_size, load_for_deploy

        loaded = load_for_deploy(self._model_name, self._num_classes, self._weights)
        size = self._input_size or loaded.meta.input_size
        if size is None:
            raise BackendError("no input size known for this model: pass --input-size HxW")
        check_input_size(*size)
        self._input_size = (int(size[0]), int(size[1]))
        self._loaded = loaded
        self._meta = loaded.meta

    # -- lifecycle (inference thread) ---------------------------------------------
    def _device_graph(self, device: Any) -> Any:
        """The deploy graph on ``device``, built from a copy of the CPU model: ``Module.to``
        moves in place, and the CPU model must stay on the CPU so that dropping the graph
        in ``deactivate`` frees every device tensor."""
        import torch

        from rtseg.models.deploy import DeployGraph

        model = copy.deepcopy(self._loaded.model).eval()
        graph = DeployGraph(model, self._loaded.meta).eval().to(device)
        for p in graph.parameters():
            p.requires_grad_(False)
        if self._channels_last:
            graph = graph.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return graph

    def _activate(self) -> None:
        from rtseg.runtime.cuda_staging import CudaStaging, require_cuda

        torch = require_cuda()
        idx = torch.cuda.current_device() if self._device_index is None else self._device_index
        device = torch.device("cuda", idx)
        torch.cuda.set_device(device)
        graph = self._device_graph(device)
        # cuDNN picks the fastest algorithms for this fixed input shape.
        torch.backends.cudnn.benchmark = True
        n, h, w = self.input_shape
        self._torch, self._graph = torch, graph
        self._staging = CudaStaging(torch, n, h, w, device)
        self._warm_up()
        if self._cuda_graph:
            self._capture()

    def _forward(self, frames: Any) -> Any:
        """uint8 NHWC frames on the GPU -> uint8 labels (the deploy graph, with autocast/channels-last)."""
        torch, g = self._torch, self._graph
        x = g.normalize(frames)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        # cache_enabled=False: cached weight casts must not outlive a CUDA graph capture.
        with torch.autocast("cuda", dtype=torch.float16, enabled=self._precision is Precision.FP16,
                            cache_enabled=False):
            logits = g.model(x)
        return logits.argmax(dim=1).to(torch.uint8)

    def _run_slot(self, slot: int) -> None:
        st = self._staging
        if self._cuda_graphs:
            self._cuda_graphs[slot].replay()  # reads dev_in[slot], writes dev_out[slot] (static buffers)
        else:
            with self._torch.inference_mode():
                st.dev_out[slot].copy_(self._forward(st.dev_in[slot]))

    def _warm_up(self) -> None:
        # First calls pick cuDNN algorithms and allocate; keep that out of timings and graph capture.
        st = self._staging
        with self._torch.cuda.stream(st.compute_stream), self._torch.inference_mode():
            for k in range(st.SLOTS):
                for _ in range(3):
                    st.dev_out[k].copy_(self._forward(st.dev_in[k]))
        st.compute_stream.synchronize()

    def _capture(self) -> None:
        torch, st = self._torch, self._staging
        self._cuda_graphs = []
        pool = None
        for k in range(st.SLOTS):
            g = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(g, pool=pool, stream=st.compute_stream):
                st.dev_out[k].copy_(self._forward(st.dev_in[k]))
            pool = g.pool()  # both slots share one memory pool
            self._cuda_graphs.append(g)
        torch.cuda.synchronize()

    def _deactivate(self) -> None:
        if self._staging is not None:
            self._staging.drain()
        self._cuda_graphs = []
        self._staging = None
        self._graph = None
        if self._torch is not None:
            self._torch.cuda.empty_cache()

    # -- inference (inference thread) ---------------------------------------------
    @property
    def max_in_flight(self) -> int:
        return 2  # the staging slots: the next upload overlaps the current inference

    def _submit(self, frames: np.ndarray) -> None:
        assert self._staging is not None
        self._staging.submit(frames, self._run_slot)

    def _collect(self) -> np.ndarray:
        assert self._staging is not None
        labels = self._staging.collect()
        self.last_timings = dict(self._staging.last_timings)
        return labels

    def _infer(self, frames: np.ndarray) -> np.ndarray:
        self._submit(frames)
        return self._collect()

    # -- description ----------------------------------------------------------------
    @property
    def meta(self) -> ModelMeta:
        assert self._meta is not None
        return self._meta

    @property
    def input_shape(self) -> tuple[int, int, int]:
        assert self._input_size is not None
        return (self._batch, self._input_size[0], self._input_size[1])

    def info(self) -> BackendInfo:
        import torch

        device = "CUDA (not activated)"
        if self.active:
            idx = torch.cuda.current_device()
            major, minor = torch.cuda.get_device_capability(idx)
            device = f"CUDA:{idx} ({torch.cuda.get_device_name(idx)}, sm_{major}{minor})"
        return BackendInfo("torch-cuda", device, self._precision, None,
                           {"torch": torch.__version__, "cuda": str(torch.version.cuda)},
                           {"cuda_graph": self._cuda_graph, "channels_last": self._channels_last,
                            "last_timings": dict(self.last_timings)})
