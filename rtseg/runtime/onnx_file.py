"""Reading an rtseg ONNX artifact's metadata and I/O shape without a framework session."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rtseg.core.errors import BackendError
from rtseg.core.meta import ONNX_META_KEY, ModelMeta


@dataclass(frozen=True)
class OnnxArtifact:
    path: Path
    meta: ModelMeta
    input_shape: tuple[int, int, int]  # N, H, W
    precision: str  # as recorded at export: "f32", "fp16-mixed", "int8-qdq"

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
        meta = ModelMeta.from_json(props[ONNX_META_KEY])
        inputs = [i for i in proto.graph.input if i.name == "frames"]
        if not inputs:
            raise BackendError(f"{path} has no 'frames' input; re-export it with rtseg-export")
        dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or dims[3] != 3 or min(dims) <= 0:
            raise BackendError(f"{path}: 'frames' must be a static [N,H,W,3] input, got {dims}")
        precision = props.get("rtseg.precision", "f32")
        if "rtseg.input" in props:
            json.loads(props["rtseg.input"])  # validates the record is intact
        return cls(path, meta, (dims[0], dims[1], dims[2]), precision)
