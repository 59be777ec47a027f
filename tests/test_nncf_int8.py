"""NNCF INT8 of a tiny trained model: accepted within budget and run on OpenVINO; an impossible budget
leaves no file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _paths import SMALL_SIZE

from rtseg.core.errors import ExportError
from rtseg.core.precision import Precision

pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def trained_onnx(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The tiny network fitted for a few steps to fixed labels of street frames (so its argmax is
    confident, like a trained model's), exported as the deploy graph; with its frames."""
    import torch
    from precision_helpers import export, street_frames, tiny_model

    frames = street_frames(24, SMALL_SIZE)
    model = tiny_model(seed=0)
    x = torch.from_numpy(frames[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255.0
    # Target: a coarse brightness/colour classing of the frames, something learnable per pixel.
    target = (x.mean(1) * 4).long().clamp(0, 3) + 4 * (x[:, 2] > x[:, 0]).long()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
    model.eval()
    path = tmp_path_factory.mktemp("nncf") / "tiny.onnx"
    return export(model, path, SMALL_SIZE), frames


def test_nncf_int8_runs_on_openvino_within_budget(trained_onnx, tmp_path: Path) -> None:
    from rtseg.export.nncf_quantize import quantize_nncf
    from rtseg.runtime.onnx_file import OnnxArtifact
    from rtseg.runtime.openvino_backend import OpenVinoBackend

    fp32, frames = trained_onnx
    out = tmp_path / "tiny_int8.onnx"
    rep = quantize_nncf(fp32, out, calib_frames=frames[:16], check_frames=frames[16:], min_agreement=0.95)
    print(f"[report] NNCF INT8 vs FP32 label agreement on held-out frames: {100 * rep.agreement:.2f}%")
    assert rep.path == out and out.is_file() and rep.agreement >= 0.95 and rep.check_frames == 8
    assert OnnxArtifact.open(out).precision is Precision.INT8
    with OpenVinoBackend(out) as be:
        assert be.info().precision is Precision.INT8
        assert be.infer(frames[:1]).shape == (1, *SMALL_SIZE)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny_int8.onnx"]


def test_an_impossible_budget_is_rejected_and_leaves_no_file(trained_onnx, tmp_path: Path) -> None:
    from rtseg.export.nncf_quantize import quantize_nncf

    fp32, frames = trained_onnx
    # Pure noise is unlike anything calibrated on: INT8 cannot keep every FP32 label there.
    noise = np.random.default_rng(0).integers(0, 256, (8, *SMALL_SIZE, 3), dtype=np.uint8)
    with pytest.raises(ExportError, match="rejected.*nothing written"):
        quantize_nncf(fp32, tmp_path / "tiny_int8.onnx", calib_frames=frames[:4], check_frames=noise,
                      min_agreement=1.0)
    assert list(tmp_path.iterdir()) == []


def test_export_cli_nncf_refusals(tmp_path: Path, capsys) -> None:
    from rtseg.cli import export

    out = tmp_path / "m.onnx"
    assert export.main(["--model", "stdc1", "--input-size", "64x96", "--precision", "fp16", "--quantizer", "nncf",
                        "-o", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtseg-export: error: --quantizer nncf makes an INT8 ONNX") and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_export_cli_nncf_writes_an_accepted_int8_onnx(small_video: Path, tmp_path: Path, capsys) -> None:
    from rtseg.cli import export
    from rtseg.runtime.onnx_file import OnnxArtifact

    out = tmp_path / "m_int8.onnx"
    rc = export.main(["--model", "stdc1", "--num-classes", "11", "--input-size", "64x96", "--precision", "int8",
                      "--quantizer", "nncf", "--calib-source", str(small_video), "--int8-agreement", "0.5",
                      "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "NNCF INT8 calibrated on" in capsys.readouterr().out
    assert OnnxArtifact.open(out).precision is Precision.INT8
