"""The arithmetic precision an artifact runs at: one type, parsed in one place.

Every command line (``--precision``), GUI setting, ONNX metadata tag
(``rtseg.precision``), engine sidecar and report goes through
:meth:`Precision.parse`, so spellings such as ``fp32``/``f32``/``float32``
or ``f16``/``fp16``/``half`` all mean the same thing everywhere, and every
report prints the same canonical name (``str(p)``: ``f32``, ``bf16``,
``fp16``, ``int8``).

What a precision *means* depends on the artifact and the backend:

- ``f32``: FP32 arithmetic (the exported graph as is);
- ``bf16``/``fp16``: reduced-precision arithmetic, either requested from a
  backend (OpenVINO's inference precision, PyTorch CUDA autocast) or baked into
  the graph (the mixed-precision FP16 ONNX, an FP16 TensorRT engine);
- ``int8``: an explicitly quantized (Q/DQ) graph or INT8 engine; the
  precision of such an artifact is fixed when it is written.
"""

from __future__ import annotations

from enum import Enum

from rtseg.core.errors import UserInputError


class Precision(str, Enum):
    """Canonical precisions. A ``str`` subclass, so JSON and f-strings show the canonical name."""

    F32 = "f32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"

    def __str__(self) -> str:
        return self.value

    @property
    def reduced(self) -> bool:
        """True for every precision below FP32 (parity checks compare these against FP32)."""
        return self is not Precision.F32

    @classmethod
    def parse(cls, text: str | Precision) -> Precision:
        """The precision ``text`` names (any accepted spelling); ``UserInputError`` otherwise."""
        if isinstance(text, Precision):
            return text
        key = str(text).strip().lower()
        try:
            return _SPELLINGS[key]
        except KeyError:
            raise UserInputError(f"unknown precision {text!r}; choose one of "
                                 f"{', '.join(p.value for p in cls)}") from None

    @classmethod
    def parse_optional(cls, text: str | Precision | None) -> Precision | None:
        """``parse``, with None or an empty string meaning "the default" (None)."""
        if text is None or (isinstance(text, str) and not text.strip()):
            return None
        return cls.parse(text)


#: Every accepted spelling. TensorRT and PyTorch say fp32/fp16, OpenVINO f32/f16;
#: older ONNX files of rtseg tagged their graphs "fp16-mixed"/"int8-qdq".
_SPELLINGS: dict[str, Precision] = {
    "f32": Precision.F32, "fp32": Precision.F32, "float32": Precision.F32, "float": Precision.F32,
    "bf16": Precision.BF16, "bfloat16": Precision.BF16,
    "f16": Precision.FP16, "fp16": Precision.FP16, "float16": Precision.FP16, "half": Precision.FP16,
    "fp16-mixed": Precision.FP16,
    "int8": Precision.INT8, "i8": Precision.INT8, "int8-qdq": Precision.INT8,
}
