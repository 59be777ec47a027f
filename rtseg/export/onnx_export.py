"""Export the fused deploy graph to ONNX, with metadata, checked and verified.

Steps (file out only when every step passed):
  1. wrap the model in ``DeployGraph`` (uint8 BGR frames in, uint8 labels out)
  2. ``torch.onnx.export`` at a fixed batch and size, opset 17
  3. write ``ModelMeta`` into ``metadata_props`` and run ``onnx.checker``
  4. run the file in ONNX Runtime and compare labels with PyTorch
  5. rename the temporary file into place

Opset 17 with the TorchScript-based exporter (``dynamo=False``): it emits the
plain Conv/Resize/ArgMax graph that ONNX Runtime, OpenVINO and TensorRT 10/11
all parse, and exports in well under a second (the dynamo exporter needs
opset >= 18 and takes several seconds per model).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtseg.core.atomic import atomic_path
from rtseg.core.errors import ExportError, UserInputError
from rtseg.core.meta import ONNX_META_KEY, ModelMeta

DEFAULT_OPSET = 17
#: Share of pixels on which ONNX Runtime and PyTorch labels must agree.
PARITY_THRESHOLD = 0.9999


@dataclass(frozen=True)
class ExportResult:
    path: Path
    input_shape: tuple[int, int, int, int]  # N, H, W, 3
    agreement: float  # ORT vs PyTorch label agreement on the verification frames
    verify_frames: int
    sha256: str


def verification_frames(n: int, height: int, width: int, sample_video: str | Path | None = None) -> np.ndarray:
    """``n`` real-looking uint8 BGR frames at model size.

    Frames spread over ``sample_video`` when given and readable (the bundled
    CamVid clip; read by the one frame reader, ``rtseg.pipeline.sampling``),
    topped up with synthetic street scenes.
    """
    from rtseg.core.errors import RtsegError
    from rtseg.core.synthetic import street_frame

    frames: list[np.ndarray] = []
    if sample_video is not None and Path(sample_video).is_file():
        from rtseg.pipeline.sampling import read_frames

        try:
            frames = list(read_frames(sample_video, (height, width), n))
        except RtsegError:
            frames = []  # an unreadable clip: synthetic frames only
    t = 0
    while len(frames) < n:
        frames.append(street_frame(height, width, t=t * 7, seed=t))
        t += 1
    return np.stack(frames)


def export_onnx(
    model,  # rtseg.models.base.SegModel (torch imported lazily)
    meta: ModelMeta,
    *,
    input_size: tuple[int, int],
    path: str | Path,
    batch: int = 1,
    opset: int = DEFAULT_OPSET,
    with_logits: bool = False,
    verify: bool = True,
    verify_source: str | Path | None = None,
    dynamic_batch: bool = False,
    tta: str = "none",
    refine=None,  # rtseg.models.crf.CRFParams | None: CRF refinement inside the graph
) -> ExportResult:
    """Export ``model`` as the fused deploy graph to ``path`` (atomically).

    ``tta``: test-time augmentation inside the graph (``rtseg.models.deploy.TTA_MODES``);
    recorded in the metadata (``meta.extra["tta"]``).

    ``dynamic_batch``: leave the batch dimension symbolic (for a TensorRT
    engine with a batch range); ONNX Runtime/OpenVINO backends need a fixed
    batch and refuse such a file.

    Raises ``ExportError`` when the checker or the ONNX Runtime parity check
    fails; nothing is left at ``path`` then.
    """
    import onnx
    import torch

    from rtseg.models.deploy import DeployGraph, check_input_size

    h, w = input_size
    check_input_size(h, w)
    if batch < 1:
        raise UserInputError(f"--batch must be >= 1, got {batch}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise UserInputError(f"output {path} must end in .onnx")

    meta = meta.with_(input_size=meta.input_size or (h, w))
    if tta != "none":
        meta = meta.with_(extra={**meta.extra, "tta": tta})
    if refine is not None:
        meta = meta.with_(extra={**meta.extra, "refine": refine.to_dict()})
    graph = DeployGraph(model.eval(), meta, with_logits=with_logits, tta=tta, refine=refine).eval()
    n_verify = max(batch, 4 if batch == 1 else batch)
    frames = verification_frames(n_verify, h, w, verify_source)
    example = torch.from_numpy(frames[:batch].copy())

    outputs = ["labels", "logits"] if with_logits else ["labels"]
    with atomic_path(path) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter warns that it is deprecated in favour of
            # dynamo; see the module docstring for why we use it.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph, (example,), str(tmp), dynamo=False, opset_version=opset,
                input_names=["frames"], output_names=outputs, do_constant_folding=True,
                dynamic_axes={name: {0: "batch"} for name in ["frames", *outputs]} if dynamic_batch else None,
            )
        proto = onnx.load(str(tmp))
        props = {
            ONNX_META_KEY: meta.to_json(),
            "rtseg.input": json.dumps({"name": "frames", "shape": [-1 if dynamic_batch else batch, h, w, 3],
                                       "dtype": "uint8",
                                       "layout": "NHWC", "channels": "BGR"}),
            "rtseg.output": json.dumps({"name": "labels", "shape": [-1 if dynamic_batch else batch, h, w],
                                        "dtype": "uint8"}),
            "rtseg.precision": "f32",
        }
        if refine is not None:
            from rtseg.models.crf import ONNX_REFINE_KEY, refine_json

            props[ONNX_REFINE_KEY] = refine_json(refine)
        del proto.metadata_props[:]
        for k, v in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        proto.producer_name = "rtseg"
        proto.doc_string = (f"rtseg deploy graph: {meta.model}, {meta.num_classes} classes, {h}x{w}, batch {batch}"
                            + (f", {refine.describe()}" if refine is not None else ""))
        try:
            onnx.checker.check_model(proto, full_check=True)
        except Exception as exc:  # onnx raises its own ValidationError types
            raise ExportError(f"exported ONNX failed onnx.checker: {exc}".splitlines()[0]) from exc
        onnx.save(proto, str(tmp))

        agreement = 1.0
        if verify:
            agreement = _verify_against_torch(graph, tmp, frames, batch)
            if agreement < PARITY_THRESHOLD:
                raise ExportError(
                    f"ONNX Runtime and PyTorch labels agree on only {agreement:.4%} of pixels "
                    f"(need {PARITY_THRESHOLD:.2%}); the export is wrong, please report it"
                )
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    return ExportResult(path, (batch, h, w, 3), agreement, len(frames), digest)


def _verify_against_torch(graph, onnx_path: Path, frames: np.ndarray, batch: int) -> float:
    """Mean label agreement of the exported file on ONNX Runtime with PyTorch.

    A raw session, not the backend: the file may have a dynamic batch (for a TensorRT
    batch range), which the ONNX backends refuse."""
    import torch

    from rtseg.eval.parity import label_agreement

    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("verifying the export needs onnxruntime: pip install 'rtseg[cpu]', or pass "
                          "--no-verify") from None
    sess = ort.InferenceSession(str(onnx_path), ort.SessionOptions(), providers=["CPUExecutionProvider"])
    agree = []
    for i in range(0, len(frames) - batch + 1, batch):
        chunk = frames[i:i + batch]
        with torch.no_grad():
            ref = graph(torch.from_numpy(chunk.copy()))
            ref = (ref[0] if isinstance(ref, tuple) else ref).numpy()
        got = sess.run(["labels"], {"frames": chunk})[0]
        if got.dtype != np.uint8 or got.shape != ref.shape:
            raise ExportError(f"ONNX labels have dtype {got.dtype} shape {got.shape}, expected uint8 {ref.shape}")
        agree.append(label_agreement(ref, got))
    return float(np.mean(agree))


def read_onnx_meta(path: str | Path) -> ModelMeta:
    """The ``ModelMeta`` stored in an rtseg ONNX file's ``metadata_props``."""
    from rtseg.runtime.onnx_file import OnnxArtifact

    return OnnxArtifact.open(path).meta
