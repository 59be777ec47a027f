"""INT8 for CPUs with NNCF: ``nncf.quantize`` of the fused deploy ONNX, accepted only within a budget.

    rep = quantize_nncf("m.onnx", "m_int8.onnx", calib_source="clip.mp4")   # raises ExportError if rejected

Why NNCF beside ONNX Runtime's quantizer (``rtseg.export.quantize``): that one
writes the symmetric, per-channel Q/DQ graph TensorRT's explicit quantization
needs; NNCF places Q/DQ the way OpenVINO's CPU plugin fuses best (it knows
which activations stay float), and keeps more of FP32's labels on this model
family. The result is an ordinary Q/DQ ONNX tagged ``rtseg.precision=int8``,
so every ONNX backend and ``--backend auto`` (as ``NAME_int8.onnx`` beside the
FP32 file) takes it.

The calibration frames are uint8 BGR at model size, exactly what the deploy
graph takes (its normalisation is inside the graph, so it is calibrated too).
Acceptance: the INT8 graph on OpenVINO must give the FP32 graph's labels on at
least ``min_agreement`` of the pixels of ``check_frames`` (default: the
calibration frames); otherwise nothing is written and the error says what to
try. ``nncf`` is an optional extra (``pip install 'rtseg[nncf]'``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtseg.core.atomic import atomic_path
from rtseg.core.errors import ExportError, UserInputError
from rtseg.core.precision import Precision


@dataclass(frozen=True)
class NncfReport:
    path: Path
    calibration_frames: int
    agreement: float  # share of pixels whose INT8 label equals FP32's, on the check frames
    check_frames: int


def _labels(path: Path, frames: np.ndarray) -> np.ndarray:
    from rtseg.runtime.openvino_backend import OpenVinoBackend

    # No precision asked: the FP32 graph runs at OpenVINO's f32 default, the INT8 one at its tag.
    with OpenVinoBackend(path) as be:
        n = be.input_shape[0]
        return np.concatenate([be.infer(frames[i:i + n]) for i in range(0, len(frames) - n + 1, n)])


def quantize_nncf(onnx_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                  calib_source: str | os.PathLike[str] | None = None, calib_frames: np.ndarray | None = None,
                  check_frames: np.ndarray | None = None, max_frames: int = 64,
                  min_agreement: float = 0.995) -> NncfReport:
    """File in, file out: the NNCF INT8 version of an FP32 deploy ONNX, written atomically if accepted."""
    try:
        import nncf
    except ImportError as exc:
        raise UserInputError("--quantizer nncf needs NNCF: pip install 'rtseg[nncf]'") from exc
    import onnx

    from rtseg.export.precision import PRECISION_META_KEY, _set_meta
    from rtseg.runtime.onnx_file import OnnxArtifact

    if not 0.0 < min_agreement <= 1.0:
        raise UserInputError(f"the INT8 agreement budget must be in (0, 1], got {min_agreement}")
    src = Path(onnx_path)
    art = OnnxArtifact.open(src)
    if art.precision is not Precision.F32:
        raise UserInputError(f"{src.name} is already {art.precision}; quantize the FP32 export")
    batch, h, w = art.input_shape
    if calib_frames is None:
        if calib_source is None:
            raise UserInputError("INT8 needs calibration frames: pass --calib-source VIDEO_OR_FOLDER "
                                 "with footage like what the model will see")
        from rtseg.pipeline.sampling import read_frames  # the pipeline's sources and resize

        calib_frames = read_frames(calib_source, (h, w), max_frames)
    if calib_frames.dtype != np.uint8 or calib_frames.shape[1:] != (h, w, 3) or len(calib_frames) < batch:
        raise UserInputError(f"calibration frames must be uint8 [N>={batch},{h},{w},3], got "
                             f"{calib_frames.dtype} {tuple(calib_frames.shape)}")
    check = calib_frames if check_frames is None else check_frames
    model = onnx.load(str(src))
    name = "frames"  # the deploy graph's one input (OnnxArtifact.open checked it)
    batches = [calib_frames[i:i + batch] for i in range(0, len(calib_frames) - batch + 1, batch)]
    dataset = nncf.Dataset(batches, lambda x: {name: x})
    try:
        q = nncf.quantize(model, dataset, subset_size=len(batches))
    except Exception as exc:  # NNCF raises many types; the user needs one line
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"NNCF INT8 quantization failed: {msg}; try the default quantizer or --precision "
                          "fp16") from exc
    have = {p.key for p in q.metadata_props}
    for p in model.metadata_props:  # the rtseg metadata (classes, palette, ...) must survive
        if p.key not in have:
            _set_meta(q, p.key, p.value)
    _set_meta(q, PRECISION_META_KEY, str(Precision.INT8))
    out = Path(out_path)
    with atomic_path(out, suffix=".int8.onnx") as tmp:
        onnx.save(q, str(tmp))
        agree = float(np.mean(_labels(tmp, check) == _labels(src, check)))
        if agree < min_agreement:
            raise ExportError(f"NNCF INT8 rejected: its labels agree with FP32 on {100 * agree:.2f}% of the "
                              f"pixels, below the {100 * min_agreement:g}% budget; nothing written. Try more or "
                              "more varied calibration frames (--calib-source), or --precision fp16")
    return NncfReport(out, len(batches) * batch, agree, len(check))
