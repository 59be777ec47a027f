"""Which backend runs the chosen model, on which artifact, at which precision: one set of rules.

    res = resolve(choice, "openvino", "bf16")            # checks everything it can, exports if needed
    res.precision                                         # Precision.BF16 (what will run)
    pipeline.start(source, res.factory)                   # the backend is built on the inference thread
    with res.create() as be: ...                          # or here, for a command that owns it

Rules (the same for ``rtseg``, ``rtseg-run``, ``rtseg-bench``, ``rtseg-eval`` and the GUI):

- A TensorRT engine runs on ``trt`` only, and ``trt`` runs engines only. Its
  precision is the one it was built at. Without TensorRT the resolution fails
  at once with a one-line message naming TensorRT (eager mode).
- An ONNX file runs on ``onnxruntime`` or ``openvino``; a zoo model or weights
  file on those two is exported to ONNX first (``ensure_onnx``, cached in
  ``engines/``), or runs directly on ``torch``/``torch-cuda``.
- The precision is the backend's ``choose_precision(requested, artifact's tag)``:
  an artifact whose graph fixes a reduced precision (INT8 Q/DQ, mixed FP16,
  any engine) runs at it; otherwise the requested one, which the backend must
  offer (OpenVINO f32/bf16/fp16, PyTorch CUDA fp16/f32, ...); None means the
  backend's default (never OpenVINO's implicit bf16).
- No backend named: ``trt`` for an engine, else ``default_backend``.
- ``auto`` (the commands' default for both ``--backend`` and ``--precision``):
  an engine runs on ``trt``; a zoo model, weights file or FP32 ONNX at batch 1
  runs on the fastest CPU path that keeps FP32's labels, measured once per
  machine and cached (``rtseg.resolve.autotune``); in benchmark mode
  (``throughput=True``: rtseg-bench, rtseg-run on a file) that may be
  OpenVINO with two streams. ``--backend X --precision
  auto`` is X at its default; ``--backend auto --precision P`` is the default
  backend at P. The GUI thread (``eager=False``) cannot measure and takes the
  default backend.
- A zoo model's ``refine`` spec (CRF refinement) goes into its export, or into the
  torch backends' graph; an ONNX file or engine carries its own.

``eager=True`` (commands) checks the artifact and exports now, so a command
fails before it starts any thread. ``eager=False`` (the GUI thread) does only
what needs no file, framework or torch import; the export and the artifact
checks run inside ``factory``, on the inference thread, and their errors
arrive through the pipeline's ``on_error``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rtseg.core.errors import UserInputError
from rtseg.core.precision import Precision
from rtseg.resolve.model import ModelChoice
from rtseg.runtime.base import Backend

#: What runs a zoo model, weights file or ONNX when no backend is named.
DEFAULT_BACKEND = "openvino"

Report = Callable[[str], None]


@dataclass(frozen=True)
class Resolution:
    """How a model will run. Built by ``resolve``; ``factory``/``create`` build the backend."""

    choice: ModelChoice
    kind: str  # canonical backend kind ("onnxruntime", "openvino", "torch", "torch-cuda", "trt")
    precision: Precision | None  # what will run (None only before a lazy artifact check)
    requested: Precision | None  # what was asked (None: the default)
    threads: int | None = None
    batch: int | None = None  # None: the artifact's (1 for an export or a checkpoint)
    artifact: Path | None = None  # file the backend opens; None while a lazy export is pending
    with_logits: bool = False  # export the ONNX with a logits output (parity checks)
    options: Mapping[str, Any] = field(default_factory=dict)  # backend keyword options (cuda_graph, requests...)
    report: Report | None = None  # told "exported PATH" / "using PATH" when an export runs or is reused

    # -- building the backend -----------------------------------------------------
    def create(self) -> Backend:
        """A new, not yet activated backend (exporting the ONNX first if still needed).

        Call it on the thread that will own the backend, or anywhere for ONNX/CPU
        backends (construction reads metadata only; ``activate`` allocates).
        """
        from rtseg.runtime.factory import TORCH_BACKENDS, create_backend

        kw: dict[str, Any] = dict(self.options)
        if self.kind == "trt":
            if self.batch is not None:
                kw["batch"] = self.batch
            return create_backend("trt", self.artifact, precision=self.requested, threads=self.threads, **kw)
        if self.kind in TORCH_BACKENDS:
            c = self.choice
            if c.refine and "refine" not in kw:
                kw["refine"] = _refine_params(c.refine)
            return create_backend(self.kind, c.weights, precision=self.requested, threads=self.threads,
                                  model=c.model, num_classes=c.num_classes, input_size=c.input_size,
                                  batch=self.batch or 1, **kw)
        path = self.artifact if self.artifact is not None else self.export().artifact
        return create_backend(self.kind, path, precision=self.requested, threads=self.threads, **kw)

    @property
    def factory(self) -> Callable[[], Backend]:
        """A zero-argument backend factory (for ``Pipeline.start``/``switch_model``)."""
        return self.create

    def export(self) -> Resolution:
        """This resolution with its ONNX exported (or found in ``engines/``); itself when it has one."""
        if self.artifact is not None or self.kind in ("trt", "torch", "torch-cuda"):
            return self
        from rtseg.export.artifacts import ensure_onnx

        c = self.choice
        path, fresh = ensure_onnx(c.model, c.weights, input_size=c.input_size, num_classes=c.num_classes,
                                  batch=self.batch or 1, with_logits=self.with_logits,
                                  refine=_refine_params(c.refine) if c.refine else None)
        if self.report is not None:
            self.report(("exported " if fresh else "using ") + str(path))
        return replace(self, artifact=path)

    # -- describing it ----------------------------------------------------------------
    def describe(self) -> str:
        """``stdc_efflite0 (stdc_efflite0_camvid.pt) on openvino (bf16)``: for status lines and logs."""
        prec = self.precision or self.requested
        return f"{self.choice.describe()} on {self.kind}" + (f" ({prec})" if prec is not None else "")


def _refine_params(spec: str) -> Any:
    """The ``rtseg.models.crf.CRFParams`` of a ``--refine`` spec (imports torch: only when a refined
    graph is built)."""
    from rtseg.models.crf import parse_refine

    return parse_refine(spec)


def backend_kind(choice: ModelChoice, backend: str | None = None, *, default_backend: str = DEFAULT_BACKEND) -> str:
    """The canonical backend kind that will run ``choice``: ``backend`` (any alias) when named,
    else ``trt`` for an engine, else ``default_backend``. Cheap: reads no file."""
    from rtseg.runtime.factory import canonical_kind

    if backend:
        return canonical_kind(backend)
    return "trt" if choice.engine is not None else canonical_kind(default_backend)


def resolve(choice: ModelChoice, backend: str | None = None, precision: str | Precision | None = None, *,
            threads: int | None = None, batch: int | None = None, eager: bool = True, with_logits: bool = False,
            default_backend: str = DEFAULT_BACKEND, options: Mapping[str, Any] | None = None,
            report: Report | None = None, autotune: bool = False, throughput: bool = False) -> Resolution:
    """Apply the rules of the module docstring; raise a one-line ``RtsegError`` when they fail.

    ``backend``/``precision``: as the user spelled them (any alias), or None.
    ``batch``: frames per inference (None: the artifact's). ``eager``: check
    artifacts and export now (commands) or leave it to ``factory`` (GUI thread).
    ``options``: backend keyword options (``cuda_graph`` for torch-cuda,
    ``requests`` for openvino, ``emulate_fp16`` for onnxruntime). ``autotune``: with
    ``auto``, measure again instead of reading the cached decision. ``throughput``: the
    frames go through in benchmark mode (a file as fast as possible), so ``auto`` may
    choose OpenVINO's two streams; never for live sources or a viewer.
    """
    from rtseg.runtime.factory import ONNX_BACKENDS, TORCH_BACKENDS, backend_class

    auto_backend = isinstance(backend, str) and backend.lower() == "auto"
    auto_precision = isinstance(precision, str) and precision.lower() == "auto"
    if auto_backend or auto_precision:
        return _resolve_auto(choice, None if auto_backend else backend, None if auto_precision else precision,
                             threads=threads, batch=batch, eager=eager, with_logits=with_logits,
                             default_backend=default_backend, options=options, report=report, force=autotune,
                             throughput=throughput)

    requested = Precision.parse_optional(precision)
    if batch is not None and batch < 1:
        raise UserInputError(f"--batch must be >= 1, got {batch}")
    kind = backend_kind(choice, backend, default_backend=default_backend)
    base = Resolution(choice, kind, None, requested, threads, batch, None, with_logits, dict(options or {}), report)
    cls = backend_class(kind)

    if choice.engine is not None or kind == "trt":
        if choice.engine is None:
            raise UserInputError("the trt backend runs a built TensorRT engine: build one with "
                                 "`rtseg-export --format engine` and pass --engine PATH")
        if kind != "trt":
            raise UserInputError(f"a TensorRT engine runs on the trt backend only, not {kind}: drop --backend "
                                 "(or pass --backend trt)")
        if not eager:
            return replace(base, artifact=choice.engine)
        from rtseg.runtime import trt_compat

        # First, so that a machine without TensorRT hears exactly that (one line naming it).
        trt_compat.import_tensorrt()
        # Reads the sidecar: checks it and the precision against the engine's.
        be = cls(choice.engine, precision=requested, batch=batch)  # type: ignore[call-arg]
        return replace(base, artifact=choice.engine, precision=be.info().precision)

    if kind in ONNX_BACKENDS:
        if choice.onnx is None:
            # An export is an FP32 graph: check the precision before spending time on it.
            chosen = cls.choose_precision(requested, Precision.F32)
            res = replace(base, precision=chosen)
            return res.export() if eager else res
        if not eager:
            return replace(base, artifact=choice.onnx)
        from rtseg.runtime.onnx_file import OnnxArtifact

        art = OnnxArtifact.open(choice.onnx)
        if with_logits and not art.has_logits:
            raise UserInputError(f"{choice.onnx.name} has no logits output; export it with "
                                 "`rtseg-export --logits` (or pass --model/--weights)")
        if batch is not None and batch != art.input_shape[0]:
            raise UserInputError(f"{choice.onnx.name} takes batch {art.input_shape[0]}, not {batch}; export it "
                                 f"with --batch {batch}")
        return replace(base, artifact=choice.onnx, precision=cls.choose_precision(requested, art.precision))

    assert kind in TORCH_BACKENDS
    if choice.refine and kind != "torch":
        raise UserInputError(f"CRF refinement runs on the torch backend or in an exported ONNX, not on {kind}: "
                             "pass --backend torch, onnxruntime or openvino")
    if choice.onnx is not None:
        raise UserInputError(f"--onnx runs on onnxruntime or openvino, not {kind}: drop --backend, or pass "
                             f"--model/--weights to run the checkpoint on {kind}")
    return replace(base, artifact=choice.weights, precision=cls.choose_precision(requested, Precision.F32))


def _resolve_auto(choice: ModelChoice, backend: str | None, precision: str | Precision | None, *,
                  threads: int | None, batch: int | None, eager: bool, with_logits: bool, default_backend: str,
                  options: Mapping[str, Any] | None, report: Report | None, force: bool,
                  throughput: bool) -> Resolution:
    """``resolve`` with ``auto`` for the backend and/or precision (``None`` here: the part that was auto)."""
    def plain(b: str | None, p: str | Precision | None) -> Resolution:
        return resolve(choice, b, p, threads=threads, batch=batch, eager=eager, with_logits=with_logits,
                       default_backend=default_backend, options=options, report=report)

    # Only "auto auto" measures; a named backend or precision keeps the ordinary rules for the other part.
    # An engine, a batch other than 1 and the GUI thread (which may not block) take the plain default.
    if backend is not None or precision is not None or choice.engine is not None or not eager \
            or (batch or 1) != 1:
        return plain(backend, precision)
    from rtseg.resolve import autotune as at

    if not at.installed_backends():
        return plain(None, None)
    if choice.onnx is not None:
        from rtseg.runtime.onnx_file import OnnxArtifact

        if OnnxArtifact.open(choice.onnx).precision is not Precision.F32:
            return plain(None, None)  # it runs at its own precision
        fp32 = choice.onnx
    else:
        ref = plain(at.installed_backends()[0], None)
        assert ref.artifact is not None
        fp32 = ref.artifact
    # A shipped INT8 artifact lies beside the checkpoint (assets/NAME_int8.onnx), not the engines/ export.
    decision = at.autotune(fp32, force=force, report=report, int8=at.int8_sibling(fp32, choice.weights),
                           throughput=throughput)
    if report is not None:
        report(decision.line())
    prec = Precision.parse(decision.precision)
    kind = decision.kind
    opts = {**dict(options or {}), **decision.options}
    return Resolution(choice, kind, prec, None if prec is Precision.INT8 else prec, threads, batch,
                      Path(decision.artifact), with_logits, opts, report)
