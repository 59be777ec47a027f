"""Reading an rtseg ONNX artifact's metadata and I/O without a framework session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rtseg.core.errors import BackendError, RtsegError
from rtseg.core.meta import ONNX_META_KEY, ModelMeta
from rtseg.core.precision import Precision

#: metadata_props key recording the precision the graph was written at (``f32``, ``fp16``, ``int8``).
PRECISION_META_KEY = "rtseg.precision"
#: metadata_props key of an INT8 graph's weight range: ``7`` or ``8`` bits (``rtseg.core.cpu.int8_saturates``
#: says why it matters: 7-bit weights give the same labels on every CPU, 8-bit ones saturate CPUs without VNNI).
INT8_WEIGHT_BITS_META_KEY = "rtseg.int8_weight_bits"


@dataclass(frozen=True)
class OnnxArtifact:
    path: Path
    meta: ModelMeta
    input_shape: tuple[int, int, int]  # N, H, W
    precision: Precision  # as the file records it (``rtseg.precision``); f32 when untagged
    outputs: tuple[str, ...] = ("labels",)  # graph output names: "labels" and optionally "logits"
    int8_weight_bits: int | None = None  # INT8 graphs: 7 or 8 (``rtseg.int8_weight_bits``); None when untagged

    @property
    def has_logits(self) -> bool:
        return "logits" in self.outputs

    @classmethod
    def open(cls, path: str | Path) -> OnnxArtifact:
        """Read metadata and input shape; clear errors for a missing or foreign file."""
        import onnx

        path = Path(path)
        if not path.is_file():
            raise BackendError(f"model file {path} does not exist; export one with rtseg-export --format onnx")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise BackendError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from exc
        props = {p.key: p.value for p in proto.metadata_props}
        if ONNX_META_KEY not in props:
            raise BackendError(
                f"{path} was not exported by rtseg (no {ONNX_META_KEY} metadata); "
                "export it with rtseg-export --format onnx"
            )
        try:
            meta = ModelMeta.from_json(props[ONNX_META_KEY])
            precision = Precision.parse(props.get(PRECISION_META_KEY, "f32"))
            bits = props.get(INT8_WEIGHT_BITS_META_KEY)
            weight_bits = int(bits) if bits in ("7", "8") else None
        except RtsegError as exc:
            raise BackendError(f"{path.name}: {exc}") from None
        inputs = [i for i in proto.graph.input if i.name == "frames"]
        if not inputs:
            raise BackendError(f"{path} has no 'frames' input; re-export it with rtseg-export")
        dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or dims[3] != 3 or min(dims) <= 0:
            raise BackendError(f"{path}: 'frames' must be a static [N,H,W,3] input, got {dims}")
        outputs = tuple(o.name for o in proto.graph.output)
        if "labels" not in outputs:
            raise BackendError(f"{path} has no 'labels' output; re-export it with rtseg-export")
        if "rtseg.input" in props:
            json.loads(props["rtseg.input"])  # validates the record is intact
        return cls(path, meta, (dims[0], dims[1], dims[2]), precision, outputs, weight_bits)
