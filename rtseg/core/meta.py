"""Model metadata that travels with every artifact.

A checkpoint, an ONNX file (``metadata_props``) and an engine's JSON sidecar
all carry one ``ModelMeta``. Nothing downstream hard-codes class names,
palettes or normalisation: it reads them from here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rtseg.core.errors import ArtifactError

#: Key under which the whole ModelMeta is stored as JSON in ONNX metadata_props.
ONNX_META_KEY = "rtseg.meta"

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ModelMeta:
    """What a deploy artifact needs to be run and displayed correctly.

    ``mean``/``std`` apply to pixels scaled to [0, 1] in ``channel_order``
    (the order the network was trained on). The deploy graph always takes BGR
    uint8 frames and converts to ``channel_order`` itself.
    """

    model: str
    class_names: tuple[str, ...]
    palette: tuple[RGB, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"
    input_size: tuple[int, int] | None = None  # (H, W) the weights were trained at
    weights: str | None = None  # human description of the source weights; None = untrained
    weights_sha256: str | None = None
    dataset: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.palette):
            raise ValueError(
                f"ModelMeta: {len(self.class_names)} class names but {len(self.palette)} palette colours"
            )
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"ModelMeta: channel_order must be RGB or BGR, got {self.channel_order!r}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def trained(self) -> bool:
        """False when the weights are a random initialisation (nothing learned)."""
        return self.weights is not None

    def with_(self, **changes: Any) -> ModelMeta:
        """A copy with some fields changed (the dataclass is frozen)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["palette"] = [list(c) for c in self.palette]
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["input_size"] = list(self.input_size) if self.input_size else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMeta:
        """The metadata an artifact recorded; ``ArtifactError`` (one line, what to do) when it
        is not a metadata record this rtseg can read."""
        if not isinstance(d, dict):
            raise ArtifactError(f"the artifact's model metadata is a {type(d).__name__}, not a record; "
                                "re-export it with rtseg-export")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            # Fields a newer rtseg added: guessing what they mean could run the model wrongly.
            raise ArtifactError(f"the artifact's model metadata has fields this rtseg does not know "
                                f"({', '.join(sorted(unknown))}): it was written by a newer rtseg; upgrade "
                                "rtseg, or re-export the artifact with this version")
        try:
            return cls._from_known(dict(d))
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise ArtifactError(f"the artifact's model metadata is damaged ({what}); re-export it "
                                "with rtseg-export") from None

    @classmethod
    def _from_known(cls, d: dict[str, Any]) -> ModelMeta:
        d["class_names"] = tuple(str(c) for c in d["class_names"])
        d["palette"] = tuple(tuple(int(v) for v in c) for c in d["palette"])
        d["mean"] = tuple(float(v) for v in d["mean"])
        d["std"] = tuple(float(v) for v in d["std"])
        if d.get("input_size") is not None:
            d["input_size"] = tuple(int(v) for v in d["input_size"])
        d["extra"] = dict(d.get("extra") or {})
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        try:
            d = json.loads(text)
        except ValueError:
            raise ArtifactError("the artifact's model metadata is not valid JSON; re-export it with "
                                "rtseg-export") from None
        return cls.from_dict(d)
