"""Which model the user means: a zoo model (+ weights) at a size, an ONNX file, or a TensorRT engine.

``resolve_model(args)`` turns command-line arguments (``--model``, ``--weights``,
``--num-classes``, ``--input-size``, ``--onnx``, ``--engine``) into a
``ModelChoice``, or the bundled default when none is given. It reads no
artifact and imports nothing heavy (torch only to check an ``--input-size``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtseg.core.errors import UserInputError

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SAMPLE_CLIP = ASSETS / "camvid_0016E5_val.mp4"
BUNDLED_MODEL = ASSETS / "stdc_efflite0_camvid.pt"
#: Used when no trained model is bundled yet: the CamVid input size, random weights.
FALLBACK_MODEL = ("stdc_efflite0", 11, (360, 480))

#: File suffixes taken for a TensorRT engine (``rtseg-export`` writes ``.engine``).
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass(frozen=True)
class ModelChoice:
    """A model request: a zoo model (+ weights) at a size, a ready ONNX file, or a built engine.

    Exactly one kind of artifact: ``engine``, else ``onnx``, else ``model``/``weights``
    (``weights`` None with a ``model`` name: random, untrained weights).
    """

    model: str | None
    weights: Path | None
    num_classes: int | None
    input_size: tuple[int, int] | None
    onnx: Path | None
    engine: Path | None = None  # a built TensorRT engine (its sidecar says the rest)
    #: ``--refine`` spec for a zoo model (e.g. "crf"): CRF refinement inside the exported graph.
    refine: str | None = None

    @property
    def artifact_kind(self) -> str:
        """``engine``, ``onnx`` or ``checkpoint`` (weights file or random weights)."""
        if self.engine is not None:
            return "engine"
        if self.onnx is not None:
            return "onnx"
        return "checkpoint"

    @classmethod
    def from_artifact(cls, path: str | Path, *, input_size: tuple[int, int] | None = None) -> ModelChoice:
        """A choice for one artifact file, by its suffix: ``.onnx``, an engine, else a checkpoint."""
        p = Path(path)
        if not p.is_file():
            raise UserInputError(f"artifact {p} does not exist; check the path")
        suffix = p.suffix.lower()
        if suffix == ".onnx":
            return cls(None, None, None, None, p)
        if suffix in ENGINE_SUFFIXES:
            return cls(None, None, None, None, None, p)
        return cls(None, p, None, input_size, None)

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

    ``args`` has the attributes of ``rtseg.cli.common.add_model_args`` plus
    ``onnx`` and ``engine`` (an argparse namespace, or any object with them;
    missing attributes count as not given).
    """
    model, weights = getattr(args, "model", None), getattr(args, "weights", None)
    onnx, engine = getattr(args, "onnx", None), getattr(args, "engine", None)
    if onnx and engine:
        raise UserInputError("pass either --onnx or --engine, not both")
    if (onnx or engine) and (model or weights):
        flag = "--engine" if engine else "--onnx"
        raise UserInputError(f"{flag} names a complete artifact; drop --model/--weights (or drop {flag})")
    size = None
    if getattr(args, "input_size", None):
        raw = args.input_size
        if isinstance(raw, str):
            from rtseg.models.deploy import parse_size  # imports torch: only when a size must be checked

            size = parse_size(raw)
        else:
            size = (int(raw[0]), int(raw[1]))
    if engine:
        return ModelChoice(None, None, None, None, None, Path(engine))
    if onnx:
        return ModelChoice(None, None, None, None, Path(onnx))
    num_classes = getattr(args, "num_classes", None)
    if model or weights:
        if weights and not Path(weights).is_file():
            raise UserInputError(f"weights file {weights} does not exist")
        return ModelChoice(model, Path(weights) if weights else None, num_classes, size, None)
    if BUNDLED_MODEL.is_file():
        return ModelChoice(None, BUNDLED_MODEL, None, size, None)
    name, n, default_size = FALLBACK_MODEL
    return ModelChoice(name, None, n, size or default_size, None)
