"""From "what model does the user want" to a backend factory, shared by ``rtseg-run`` and the GUI.

Moved out of ``rtseg/cli/run.py`` so the GUI (which may not import the CLI)
and the headless runner turn the same arguments into the same backend.

Nothing heavy is imported at module level: exporting a checkpoint to ONNX
needs torch, which is imported only when a factory actually exports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtseg.core.errors import UserInputError
from rtseg.runtime.base import Backend

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SAMPLE_CLIP = ASSETS / "camvid_0016E5_val.mp4"
BUNDLED_MODEL = ASSETS / "stdc1_camvid.pt"
#: Used when no trained model is bundled yet: the CamVid input size, random weights.
FALLBACK_MODEL = ("stdc1", 11, (360, 480))


@dataclass(frozen=True)
class ModelChoice:
    """A model request: a zoo model (+ weights) at a size, or a ready ONNX file."""

    model: str | None
    weights: Path | None
    num_classes: int | None
    input_size: tuple[int, int] | None
    onnx: Path | None
    engine: Path | None = None  # a built TensorRT engine (its sidecar says the rest)
    #: ``--refine`` spec for a zoo model (e.g. "crf"): CRF refinement inside the exported graph.
    refine: str | None = None

    def describe(self) -> str:
        if self.engine is not None:
            return self.engine.name
        if self.onnx is not None:
            return self.onnx.name
        what = self.model or "model"
        if self.weights is not None:
            what += f" ({self.weights.name})"
        else:
            what += " (random weights)"
        if self.input_size:
            what += f" {self.input_size[1]}x{self.input_size[0]}"
        if self.refine:
            what += f" + {self.refine.split(',')[0]} refinement"
        return what


def resolve_model(args: Any) -> ModelChoice:
    """What the user asked for, or the bundled default (trained if shipped, else random STDC1).

    ``args`` has the attributes of ``add_model_args`` plus ``onnx`` (an
    argparse namespace, or any object with them).
    """
    size = None
    if getattr(args, "input_size", None):
        from rtseg.models.deploy import parse_size  # imports torch: only when a size must be checked

        size = parse_size(args.input_size)
    if getattr(args, "onnx", None):
        return ModelChoice(None, None, None, None, Path(args.onnx))
    if args.model or args.weights:
        if args.weights and not Path(args.weights).is_file():
            raise UserInputError(f"weights file {args.weights} does not exist")
        return ModelChoice(args.model, Path(args.weights) if args.weights else None, args.num_classes, size, None)
    if BUNDLED_MODEL.is_file():
        return ModelChoice(None, BUNDLED_MODEL, None, size, None)
    name, n, default_size = FALLBACK_MODEL
    return ModelChoice(name, None, n, size or default_size, None)


def make_backend_factory(choice: ModelChoice, backend: str, precision: str, threads: int | None, *,
                         export_now: bool = True,
                         report: Callable[[str], None] | None = print) -> Callable[[], Backend]:
    """A zero-argument factory for the pipeline's inference thread.

    ``export_now=True`` exports (or finds in ``engines/``) the ONNX here, so a
    CLI fails before starting threads; the GUI passes False so the export
    (torch import included) runs inside the factory, on the inference thread,
    and the window stays responsive. ``report`` gets "exported PATH" / "using PATH".
    """
    from rtseg.runtime.factory import ONNX_BACKENDS, canonical_kind, create_backend

    kind = canonical_kind(backend)
    if choice.engine is not None or kind == "trt":
        if choice.engine is None or kind != "trt":
            raise UserInputError("a TensorRT engine runs on the trt backend only, and the trt backend needs an "
                                 "engine file: build one with rtseg-export --format engine and pick it")
        engine = choice.engine
        # the engine's precision is fixed when it is built; the sidecar records it
        return lambda: create_backend("trt", engine, threads=threads)
    def refine() -> Any:
        if not choice.refine:
            return None
        from rtseg.models.crf import parse_refine  # torch: only when a refined graph is built

        return parse_refine(choice.refine)

    if kind in ONNX_BACKENDS:
        def onnx_path() -> Path:
            if choice.onnx is not None:
                return choice.onnx
            from rtseg.export.artifacts import ensure_onnx

            path, fresh = ensure_onnx(choice.model, choice.weights, input_size=choice.input_size,
                                      num_classes=choice.num_classes, refine=refine())
            if report is not None:
                report(("exported " if fresh else "using ") + str(path))
            return path

        if export_now:
            path = onnx_path()
            return lambda: create_backend(kind, path, precision=precision, threads=threads)
        return lambda: create_backend(kind, onnx_path(), precision=precision, threads=threads)
    if choice.onnx is not None:
        raise UserInputError(f"--onnx runs on onnxruntime or openvino, not {kind}")
    extra = {"refine": refine()} if choice.refine else {}
    return lambda: create_backend(kind, choice.weights, precision=precision, threads=threads,
                                  model=choice.model, num_classes=choice.num_classes, input_size=choice.input_size,
                                  **extra)
