"""INT8 for CPUs with NNCF: quantization of the fused deploy ONNX under an accuracy budget.

    rep = quantize_nncf("m.onnx", "m_int8.onnx", calib_source="clip.mp4")   # raises ExportError if rejected
    rep = quantize_nncf("m.onnx", "m_int8.onnx", calib_source="clip.mp4",
                        labelled=labelled_frames(dataset, (360, 480), 48), max_miou_drop=0.5)

Why NNCF beside ONNX Runtime's quantizer (``rtseg.export.quantize``): that one
writes the symmetric, per-channel Q/DQ graph TensorRT's explicit quantization
needs; NNCF places Q/DQ the way OpenVINO's CPU plugin fuses best (it knows
which activations stay float), and with its accuracy control it keeps the few
layers that cannot take INT8 in float. On the EfficientNet-Lite default model
ONNX Runtime's quantizer costs 12 mIoU points; NNCF's plain quantization
keeps 98.96% of FP32's labels with symmetric activations and 99.40% with the
MIXED preset (asymmetric activations, which ReLU6-free projections and the
head's logits need), measured on 48 CamVid frames. The result is an ordinary
Q/DQ ONNX tagged ``rtseg.precision=int8``, so every ONNX backend and
``--backend auto`` (as ``NAME_int8.onnx`` beside the FP32 file) takes it.

The calibration frames are uint8 BGR at model size, exactly what the deploy
graph takes (its normalisation is inside the graph, so it is calibrated too).

The budget, checked on OpenVINO (the backend the artifact is for) through
``nncf.quantize_with_accuracy_control``, which reverts the most sensitive
quantizers to float until the budget holds:

- with labelled frames: the mIoU drop against ground truth, at most
  ``max_miou_drop`` points (default 0.5);
- without: the share of pixels whose INT8 label equals FP32's, at least
  ``min_agreement`` (default 99.5%), on ``check_frames`` (default: the
  calibration frames).

Weights are 7-bit by default (``weight_bits=7``, NNCF's overflow fix on every layer): x86 CPUs
without VNNI saturate on 8-bit weights (``rtseg.core.cpu.int8_saturates``), so an 8-bit artifact
validated on one CPU gives other labels on another (the previous shipped default: 99.59% agreement
with FP32 on an AVX512-VNNI EPYC, 99.28% on an AVX2-only one); a 7-bit artifact computes the same on
every CPU, so the budget checked here holds wherever it runs. ``weight_bits=8`` (NNCF's default: the
first layer 7-bit, the rest 8-bit) is for VNNI machines only.

A result outside the budget is rejected: nothing is written and the error says
what to try. ``nncf`` is an optional extra (``pip install 'rtseg[nncf]'``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtseg.core.atomic import atomic_path
from rtseg.core.errors import ExportError, UserInputError
from rtseg.core.precision import Precision


@dataclass(frozen=True)
class LabelledFrames:
    """Frames with ground truth for the mIoU budget: ``frames`` uint8 BGR ``[N,H,W,3]`` at model size,
    ``labels`` the N label maps at their own size (predictions are resized to them, as rtseg-eval does)."""

    frames: np.ndarray
    labels: list[np.ndarray]
    num_classes: int
    ignore_index: int | None
    name: str = "labelled frames"


def labelled_frames(ds: Any, input_size: tuple[int, int], count: int) -> LabelledFrames:
    """``count`` pairs spread evenly over a dataset (``rtseg.data.datasets.SegDataset``)."""
    from rtseg.data.augment import resize_for_model

    if len(ds) == 0:
        raise UserInputError(f"dataset {ds.info.name} has no labelled frames")
    idx = np.unique(np.linspace(0, len(ds) - 1, min(count, len(ds))).astype(int))
    frames = np.stack([resize_for_model(ds.load_image(int(i)), input_size) for i in idx])
    return LabelledFrames(frames, [ds.load_label(int(i)) for i in idx], ds.info.num_classes,
                          ds.info.ignore_index, f"{len(idx)} frames of {ds.info.name}")


@dataclass(frozen=True)
class NncfReport:
    path: Path
    calibration_frames: int
    agreement: float  # share of pixels whose INT8 label equals FP32's, on the check frames
    check_frames: int
    quantizers: int  # QuantizeLinear nodes in the result (what accuracy control left in INT8)
    fp32_miou: float | None = None  # on the labelled frames, when given
    int8_miou: float | None = None
    weight_bits: int = 7

    @property
    def miou_drop_points(self) -> float | None:
        if self.fp32_miou is None or self.int8_miou is None:
            return None
        return 100 * (self.fp32_miou - self.int8_miou)


def _labels(path: Path, frames: np.ndarray) -> np.ndarray:
    from rtseg.runtime.openvino_backend import OpenVinoBackend

    # No precision asked: the FP32 graph runs at OpenVINO's f32 default, the INT8 one at its tag.
    with OpenVinoBackend(path) as be:
        n = be.input_shape[0]
        if len(frames) % n:
            raise UserInputError(f"{len(frames)} check frames do not fill batches of {n}")
        return np.concatenate([be.infer(frames[i:i + n]) for i in range(0, len(frames), n)])


def _miou(pred: np.ndarray, truth: list[np.ndarray], num_classes: int, ignore: int | None) -> float:
    from rtseg.eval.evaluate import labels_to_size
    from rtseg.eval.metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes, ignore)
    for p, g in zip(pred, truth, strict=True):
        cm.update(labels_to_size(p, g.shape), g)  # as rtseg-eval scores
    return cm.result().miou


def _quantizer_count(model: Any) -> int:
    return sum(1 for n in model.graph.node if n.op_type == "QuantizeLinear")


class _Validator:
    """NNCF's ``validation_fn``: runs each model NNCF hands it (an ``onnx.ModelProto``: the FP32
    reference, the quantized model, and ones with quantizers reverted) on OpenVINO through a scratch
    file, and scores the frames it is given (their indices) by agreement with FP32 or by mIoU.

    Called on the exporting thread only (NNCF's ranking runs in-process, one worker)."""

    def __init__(self, meta: dict[str, str], frames: np.ndarray, reference: np.ndarray,
                 truth: LabelledFrames | None, scratch: Path) -> None:
        self.meta, self.frames, self.reference, self.truth, self.scratch = meta, frames, reference, truth, scratch

    def labels(self, model: Any, idx: list[int]) -> np.ndarray:
        import onnx

        from rtseg.export.precision import PRECISION_META_KEY, _set_meta

        have = {p.key for p in model.metadata_props}
        for k, v in self.meta.items():
            if k not in have:
                _set_meta(model, k, v)
        if _quantizer_count(model):
            _set_meta(model, PRECISION_META_KEY, str(Precision.INT8))
        path = self.scratch / "candidate.onnx"
        onnx.save(model, str(path))
        return _labels(path, self.frames[idx])

    def __call__(self, model: Any, items: Iterable[Any]) -> tuple[float, list[float]]:
        idx = [int(i) for i in items]
        pred = self.labels(model, idx)
        if self.truth is None:
            per = [float(np.mean(p == self.reference[i])) for p, i in zip(pred, idx, strict=True)]
            return float(np.mean(per)), per
        t = self.truth
        gts = [t.labels[i] for i in idx]
        per = [_miou(p[None], [g], t.num_classes, t.ignore_index) for p, g in zip(pred, gts, strict=True)]
        return _miou(pred, gts, t.num_classes, t.ignore_index), per


def quantize_nncf(onnx_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                  calib_source: str | os.PathLike[str] | None = None, calib_frames: np.ndarray | None = None,
                  check_frames: np.ndarray | None = None, labelled: LabelledFrames | None = None,
                  max_frames: int = 64, min_agreement: float = 0.995,
                  max_miou_drop: float = 0.5, max_reverted: int = 20, weight_bits: int = 7) -> NncfReport:
    """File in, file out: the NNCF INT8 version of an FP32 deploy ONNX, written atomically if accepted.

    ``labelled``: frames with ground truth; then the budget is ``max_miou_drop`` mIoU points on them
    (``min_agreement`` is reported, not enforced). Otherwise the budget is ``min_agreement`` on
    ``check_frames`` (default: the calibration frames). ``max_reverted``: at most this many
    quantizer groups go back to float (each costs one validation pass, and an INT8 graph that
    is mostly float is no faster than FP32). ``weight_bits``: 7 (every CPU) or 8 (VNNI CPUs only)."""
    try:
        import nncf
        from nncf.quantization.advanced_parameters import (
            AdvancedAccuracyRestorerParameters,
            AdvancedQuantizationParameters,
            OverflowFix,
        )
    except ImportError as exc:
        raise UserInputError("--quantizer nncf needs NNCF: pip install 'rtseg[nncf]'") from exc
    import onnx

    from rtseg.export.precision import PRECISION_META_KEY, _set_meta
    from rtseg.export.quantize import check_weight_bits
    from rtseg.runtime.onnx_file import INT8_WEIGHT_BITS_META_KEY, OnnxArtifact

    check_weight_bits(weight_bits)
    if not 0.0 < min_agreement <= 1.0:
        raise UserInputError(f"the INT8 agreement budget must be in (0, 1], got {min_agreement}")
    if max_reverted < 0:
        raise UserInputError(f"max_reverted must be >= 0, got {max_reverted}")
    if max_miou_drop < 0:
        raise UserInputError(f"the INT8 mIoU budget must be >= 0 points, got {max_miou_drop}")
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
    for what, f in (("calibration", calib_frames), ("check", check_frames),
                    ("labelled", None if labelled is None else labelled.frames)):
        if f is not None and (f.dtype != np.uint8 or f.shape[1:] != (h, w, 3) or len(f) < batch):
            raise UserInputError(f"{what} frames must be uint8 [N>={batch},{h},{w},3], got "
                                 f"{f.dtype} {tuple(f.shape)}")
    if labelled is not None and labelled.num_classes != art.meta.num_classes:
        raise UserInputError(f"the labelled frames have {labelled.num_classes} classes but the model predicts "
                             f"{art.meta.num_classes}")
    check = labelled.frames if labelled is not None else (calib_frames if check_frames is None else check_frames)
    check = check[: len(check) // batch * batch]
    model = onnx.load(str(src))
    meta = {p.key: p.value for p in model.metadata_props}
    name = "frames"  # the deploy graph's one input (OnnxArtifact.open checked it)
    batches = [calib_frames[i:i + batch] for i in range(0, len(calib_frames) - batch + 1, batch)]
    calib = nncf.Dataset(batches, lambda x: {name: x})
    # Validation items are batch-start indices into the check frames; the validator slices them.
    reference = _labels(src, check)
    with tempfile.TemporaryDirectory(prefix="rtseg-nncf-") as scratch:
        validator = _Validator(meta, check, reference, labelled, Path(scratch))
        starts = list(range(0, len(check), batch))
        per_batch = _BatchValidator(validator, batch)
        if labelled is not None:
            max_drop = max_miou_drop / 100.0
        else:
            max_drop = 1.0 - min_agreement
        nncf_log = logging.getLogger("nncf")
        level = nncf_log.level
        nncf_log.setLevel(logging.WARNING)  # its per-step INFO lines would bury rtseg's own report
        try:
            q = nncf.quantize_with_accuracy_control(
                model, calib, nncf.Dataset(starts), per_batch, max_drop=max_drop,
                preset=nncf.QuantizationPreset.MIXED, subset_size=len(batches),
                advanced_quantization_parameters=AdvancedQuantizationParameters(
                    overflow_fix=OverflowFix.ENABLE if weight_bits == 7 else OverflowFix.FIRST_LAYER),
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                    max_num_iterations=max_reverted, ranking_subset_size=min(len(starts), 32),
                    num_ranking_workers=1))
        except Exception as exc:  # NNCF raises many types; the user needs one line
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"NNCF INT8 quantization failed: {msg}; try the default quantizer or --precision "
                              "fp16") from exc
        finally:
            nncf_log.setLevel(level)
    have = {p.key for p in q.metadata_props}
    for k, v in meta.items():  # the rtseg metadata (classes, palette, ...) must survive
        if k not in have:
            _set_meta(q, k, v)
    _set_meta(q, PRECISION_META_KEY, str(Precision.INT8))
    _set_meta(q, INT8_WEIGHT_BITS_META_KEY, str(weight_bits))
    if not _quantizer_count(q):
        raise ExportError("NNCF INT8 rejected: the budget held only with every layer back in float, which is "
                          "FP32, not INT8; nothing written. Loosen the budget, or run the FP32 model at bf16")
    out = Path(out_path)
    with atomic_path(out, suffix=".int8.onnx") as tmp:
        onnx.save(q, str(tmp))
        got = _labels(tmp, check)  # the file as written, on the backend it is for
        agree = float(np.mean(got == reference))
        fp32_miou = int8_miou = None
        if labelled is not None:
            t = labelled
            fp32_miou = _miou(reference, t.labels[: len(check)], t.num_classes, t.ignore_index)
            int8_miou = _miou(got, t.labels[: len(check)], t.num_classes, t.ignore_index)
            drop = 100 * (fp32_miou - int8_miou)
            if drop > max_miou_drop:
                raise ExportError(f"NNCF INT8 rejected: it loses {drop:.2f} mIoU points on {t.name} "
                                  f"({100 * fp32_miou:.2f}% -> {100 * int8_miou:.2f}%), over the "
                                  f"{max_miou_drop:g}-point budget; nothing written. Try more or more varied "
                                  "calibration frames (--calib-source), or --precision fp16")
        elif agree < min_agreement:
            raise ExportError(f"NNCF INT8 rejected: its labels agree with FP32 on {100 * agree:.2f}% of the "
                              f"pixels, below the {100 * min_agreement:g}% budget; nothing written. Try more or "
                              "more varied calibration frames (--calib-source), or --precision fp16")
    return NncfReport(out, len(batches) * batch, agree, len(check), _quantizer_count(q), fp32_miou, int8_miou,
                      weight_bits)


class _BatchValidator:
    """Adapts NNCF's items (batch starts) to the frame indices the validator scores."""

    def __init__(self, validator: _Validator, batch: int) -> None:
        self.validator, self.batch = validator, batch

    def __call__(self, model: Any, items: Iterable[Any]) -> tuple[float, list[float]]:
        idx = [s + j for s in items for j in range(self.batch)]
        metric, per = self.validator(model, idx)
        if self.batch > 1:  # one value per item (batch), as NNCF ranks items
            per = [float(np.mean(per[k:k + self.batch])) for k in range(0, len(per), self.batch)]
        return metric, per
