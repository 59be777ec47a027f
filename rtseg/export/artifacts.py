"""Resolve "a model" as users name it into a deploy artifact, exporting on demand.

``ensure_onnx`` keys the cached ONNX in ``engines/`` on everything that
changes the graph (model, classes, size, batch, weights hash), so asking
again reuses the file and a changed weights file gets a new export.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rtseg.core.errors import UserInputError
from rtseg.core.hashing import file_sha256

DEFAULT_ENGINE_DIR = Path("engines")


def onnx_cache_path(model: str, num_classes: int | None, input_size: tuple[int, int], batch: int | None,
                    weights: str | Path | None, out_dir: str | Path = DEFAULT_ENGINE_DIR,
                    with_logits: bool = False, refine=None) -> Path:
    """Where the ONNX export of this exact request lives (``batch`` None: dynamic batch;
    ``refine`` a ``CRFParams``: the graph with CRF refinement, keyed on its parameters)."""
    from rtseg import __version__

    tag = file_sha256(weights)[:12] if weights else f"random{num_classes}"
    h, w = input_size
    b = ("dyn" if batch is None else str(batch)) + ("_logits" if with_logits else "")
    if refine is not None:
        from rtseg.models.crf import refine_json

        b += "_crf"
        tag += "|" + refine_json(refine)
    key = hashlib.sha256(f"{model}|{num_classes}|{h}x{w}|{b}|{tag}|{__version__}".encode()).hexdigest()[:8]
    return Path(out_dir) / f"{model}_{h}x{w}_b{b}_{tag[:8]}_{key}.onnx"


def ensure_onnx(model: str | None, weights: str | Path | None, *, input_size: tuple[int, int] | None,
                num_classes: int | None = None, batch: int | None = 1, out_dir: str | Path = DEFAULT_ENGINE_DIR,
                verify_source: str | Path | None = None, with_logits: bool = False,
                refine=None) -> tuple[Path, bool]:
    """Return (path, exported_now) of the ONNX deploy graph for this model request.

    ``batch=None`` exports a dynamic batch dimension (for TensorRT batch ranges);
    ``with_logits`` adds the float logits output (parity checks look for NaN/Inf in it);
    ``refine`` (a ``rtseg.models.crf.CRFParams``) exports the graph with CRF refinement.
    """
    from rtseg.export.onnx_export import export_onnx
    from rtseg.models.deploy import load_for_deploy

    if weights is not None and not Path(weights).is_file():
        raise UserInputError(f"weights file {weights} does not exist")
    loaded = load_for_deploy(model, num_classes, weights)
    size = input_size or loaded.meta.input_size
    if size is None:
        raise UserInputError("no input size known for this model: pass --input-size HxW")
    path = onnx_cache_path(loaded.meta.model, loaded.model.num_classes, tuple(size), batch, weights, out_dir,
                           with_logits, refine)
    if path.is_file():
        return path, False
    export_onnx(loaded.model, loaded.meta, input_size=tuple(size), batch=batch or 1, path=path,
                verify_source=verify_source, dynamic_batch=batch is None, with_logits=with_logits, refine=refine)
    return path, True
