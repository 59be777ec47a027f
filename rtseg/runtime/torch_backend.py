"""PyTorch backend (CPU) running the same fused deploy graph as every other backend.

The artifact is a weights file (ours or a public release checkpoint) or no
weights at all (random initialisation, reported as untrained).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rtseg.core.errors import BackendError
from rtseg.core.meta import ModelMeta
from rtseg.core.precision import Precision
from rtseg.runtime.base import Backend, BackendInfo


class TorchBackend(Backend):
    """Runs ``DeployGraph(model)`` eagerly in f32 on the CPU (logits available for parity checks)."""

    kind = "torch"
    precisions = (Precision.F32,)

    def __init__(self, weights: str | Path | None, *, model: str | None = None,
                 num_classes: int | None = None, input_size: tuple[int, int] | None = None,
                 batch: int = 1, precision: str | Precision | None = None, threads: int | None = None,
                 tta: str = "none", refine: Any = None) -> None:
        """``refine``: a ``rtseg.models.crf.CRFParams`` adds CRF refinement to the graph."""
        super().__init__()
        self._tta = tta
        self.choose_precision(precision)
        if weights is None and model is None:
            raise BackendError("the torch backend needs --model NAME and/or --weights PATH")
        self._weights = Path(weights) if weights is not None else None
        self._model_name = model
        self._num_classes = num_classes
        self._input_size = input_size
        self._batch = batch
        self._threads = threads
        self._refine = refine
        self._graph: Any = None  # the DeployGraph while active
        self._meta: ModelMeta | None = None
        # Load eagerly so metadata is available before activate(); the weights
        # are on the CPU anyway and activate() only sets threads.
        self._load()

    def _load(self) -> None:
        import torch

        from rtseg.models.deploy import DeployGraph, check_input_size, load_for_deploy

        loaded = load_for_deploy(self._model_name, self._num_classes, self._weights)
        self._meta = loaded.meta
        size = self._input_size or loaded.meta.input_size
        if size is None:
            raise BackendError("no input size known for this model: pass --input-size HxW")
        check_input_size(*size)
        self._input_size = tuple(size)  # type: ignore[assignment]
        meta = loaded.meta
        if self._tta != "none":
            meta = meta.with_(extra={**meta.extra, "tta": self._tta})
        if self._refine is not None:
            meta = meta.with_(extra={**meta.extra, "refine": self._refine.to_dict()})
        self._meta = meta
        # with logits: argmax needs them anyway, so returning them costs nothing
        self._graph = DeployGraph(loaded.model.eval(), loaded.meta, with_logits=True, tta=self._tta,
                                  refine=self._refine).eval()
        for p in self._graph.parameters():
            p.requires_grad_(False)
        self._torch = torch

    def _activate(self) -> None:
        if self._threads:
            self._torch.set_num_threads(self._threads)

    def _deactivate(self) -> None:
        """Nothing to release: the graph stays loaded on the CPU."""

    def _infer(self, frames: np.ndarray) -> np.ndarray:
        return self._infer_with_logits(frames)[0]

    @property
    def has_logits(self) -> bool:
        return True

    def _infer_with_logits(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self._graph is not None
        with self._torch.inference_mode():
            labels, logits = self._graph(self._torch.from_numpy(frames))
        return labels.numpy(), logits.numpy()

    @property
    def meta(self) -> ModelMeta:
        assert self._meta is not None
        return self._meta

    @property
    def input_shape(self) -> tuple[int, int, int]:
        assert self._input_size is not None
        return (self._batch, self._input_size[0], self._input_size[1])

    def info(self) -> BackendInfo:
        return BackendInfo("torch", "CPU", Precision.F32, self._torch.get_num_threads(),
                           {"torch": self._torch.__version__})
