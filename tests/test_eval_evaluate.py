"""rtseg-eval through real backends (PyTorch checkpoint, ONNX Runtime, OpenVINO) on real files."""

from __future__ import annotations

import json

import cv2
import pytest

from rtseg.core.errors import UserInputError
from rtseg.data.datasets import open_dataset
from rtseg.data.synth import write_synthetic_dataset
from rtseg.eval.evaluate import evaluate_backend, labels_to_size, parity


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A random 4-class STDC1 saved as an rtseg checkpoint and exported to ONNX (64x80),
    and a dataset whose labels are that model's own predictions."""
    import torch

    from rtseg.core.meta import ModelMeta
    from rtseg.data.datasets import open_dataset as _open
    from rtseg.export.onnx_export import export_onnx
    from rtseg.models import create_model
    from rtseg.models.checkpoint import save_checkpoint
    from rtseg.runtime.factory import create_backend

    tmp = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    model = create_model("stdc1", 4).eval()
    data = write_synthetic_dataset(tmp / "ds", splits={"val": 3}, size=(64, 80), num_classes=4)
    ds = _open(data, "val")
    meta = ModelMeta("stdc1", ds.info.class_names, ds.info.palette, (0.485, 0.456, 0.406),
                     (0.229, 0.224, 0.225), input_size=(64, 80), weights="random (test)")
    ckpt = save_checkpoint(tmp / "m.pt", model, meta)
    onnx_path = export_onnx(model, meta, input_size=(64, 80), path=tmp / "m.onnx", verify=False).path
    with create_backend("torch", ckpt) as be:
        for i in range(len(ds)):
            pred = be.infer(ds.load_image(i)[None])[0]
            cv2.imwrite(str(ds.pairs[i][1]), pred)
    return {"ckpt": ckpt, "onnx": onnx_path, "data": data}


def test_predictions_scored_against_themselves_are_100_percent(artifacts):
    from rtseg.runtime.factory import create_backend

    ds = open_dataset(artifacts["data"], "val")
    with create_backend("torch", artifacts["ckpt"]) as be:
        m = evaluate_backend(be, ds)
    assert m.miou == 1.0 and m.pixel_accuracy == 1.0
    assert m.confusion.sum() == 3 * 64 * 80


def test_parity_torch_vs_onnxruntime(artifacts):
    from rtseg.runtime.factory import create_backend

    ds = open_dataset(artifacts["data"], "val")
    with create_backend("torch", artifacts["ckpt"]) as a, create_backend("onnxruntime", artifacts["onnx"]) as b:
        rep = parity(a, b, ds, names=("torch", "ort"))
    # the one parity report type: per frame, per class, and both sides against ground truth
    assert rep.frames == 3 and len(rep.per_frame) == 3 and rep.worst_frame_agreement > 0.99
    assert rep.reference_miou_gt == 1.0 and rep.candidate_miou_gt > 0.97
    assert rep.reference == "torch" and rep.candidate == "ort" and not rep.logits_checked
    assert "parity ort vs torch" in rep.summary() and "against ground truth" in rep.summary()


def test_other_image_size_is_resized_like_the_pipeline(artifacts, tmp_path):
    """Frames of another size are resized to the model input; predictions come back
    to the label size, so a dataset at 2x is scored at its own resolution."""
    from rtseg.runtime.factory import create_backend

    src = open_dataset(artifacts["data"], "val")
    big = write_synthetic_dataset(tmp_path / "big", splits={"val": 3}, size=(64, 80), num_classes=4)
    ds = open_dataset(big, "val")
    with create_backend("torch", artifacts["ckpt"]) as be:
        for i in range(len(ds)):
            img = cv2.resize(src.load_image(i), (160, 128), interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(ds.pairs[i][0]), img)
            small = be.infer(cv2.resize(img, (80, 64), interpolation=cv2.INTER_LINEAR)[None])[0]
            cv2.imwrite(str(ds.pairs[i][1]), labels_to_size(small, (128, 160)))
        m = evaluate_backend(be, ds)
    assert m.miou == 1.0 and m.confusion.sum() == 3 * 128 * 160


def test_class_count_mismatch_is_refused(artifacts, tmp_path):
    from rtseg.runtime.factory import create_backend

    other = write_synthetic_dataset(tmp_path / "o", splits={"val": 1}, num_classes=5)
    with create_backend("torch", artifacts["ckpt"]) as be, pytest.raises(UserInputError, match="4 classes"):
        evaluate_backend(be, open_dataset(other, "val"))


def test_cli_json_and_parity_with_openvino(artifacts, tmp_path, capsys):
    from rtseg.cli.eval import main

    out = tmp_path / "r.json"
    assert main([str(artifacts["onnx"]), "--data", str(artifacts["data"]), "--json", str(out), "--threads", "1"]) == 0
    res = json.loads(out.read_text())
    assert res["backend"] == "onnxruntime" and res["frames"] == 3 and res["miou"] > 0.97
    assert len(res["confusion_matrix"]) == 4 and set(res["per_class_iou"]) == {f"class {i}" for i in range(4)}
    assert "mIoU" in capsys.readouterr().out
    pj = tmp_path / "p.json"
    assert main([str(artifacts["onnx"]), "--data", str(artifacts["data"]), "--parity-with", "openvino",
                 "--parity-precision", "f32", "--json", str(pj)]) == 0
    p = json.loads(pj.read_text())
    assert p["worst_frame_agreement"] > 0.99 and p["frames"] == 3 and len(p["per_frame"]) == 3
    assert main([str(tmp_path / "missing.onnx"), "--data", str(artifacts["data"])]) != 0
    assert "does not exist" in capsys.readouterr().err


def test_accuracy_drop_against_ground_truth_hand_built():
    import numpy as np

    from rtseg.core.errors import ExportError
    from rtseg.eval.evaluate import accuracy_drop, check_accuracy_drop
    from rtseg.eval.metrics import SegMetrics

    # Baseline: perfect on 2 classes. Candidate: 10 of class 1's 40 pixels called class 0.
    base = SegMetrics.from_confusion(np.array([[60, 0], [0, 40]]), ["a", "b"])
    cand = SegMetrics.from_confusion(np.array([[60, 0], [10, 30]]), ["a", "b"])
    d = accuracy_drop(base, cand, names=("fp32", "int8"))
    # IoU a = 60/70, IoU b = 30/40: mIoU 0.80357 -> drop 19.64 points; per class 14.29 and 25.
    assert d["miou_drop_points"] == pytest.approx(100 * (1 - (60 / 70 + 30 / 40) / 2))
    assert d["class_drop_points"] == pytest.approx({"a": 100 * (1 - 60 / 70), "b": 25.0})
    check_accuracy_drop(d, 20.0)
    with pytest.raises(ExportError, match=r"int8 loses 19.64 mIoU points .* relative to fp32"):
        check_accuracy_drop(d, 1.0)


def test_cli_baseline_reports_the_drop_and_enforces_max_drop(artifacts, tmp_path, capsys):
    """--baseline evaluates both artifacts against ground truth; --max-drop rejects, keeping the JSON."""
    import torch

    from rtseg.cli.eval import main
    from rtseg.export.onnx_export import export_onnx
    from rtseg.models import create_model
    from rtseg.runtime.onnx_file import OnnxArtifact

    data = str(artifacts["data"])
    onnx_path = str(artifacts["onnx"])
    same = tmp_path / "same.json"
    assert main([onnx_path, "--baseline", onnx_path, "--max-drop", "0", "--data", data, "--json", str(same)]) == 0
    assert json.loads(same.read_text())["versus_baseline"]["miou_drop_points"] == 0.0
    assert "drop +0.00 points against ground truth" in capsys.readouterr().out
    # Another random model scores far worse on labels the first one produced: rejected.
    torch.manual_seed(1)
    other = export_onnx(create_model("stdc1", 4).eval(), OnnxArtifact.open(onnx_path).meta, input_size=(64, 80),
                        path=tmp_path / "other.onnx", verify=False).path
    js = tmp_path / "worse.json"
    assert main([str(other), "--baseline", onnx_path, "--max-drop", "1", "--data", data, "--json", str(js)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mIoU points against ground truth" in err and "budget 1" in err
    d = json.loads(js.read_text())["versus_baseline"]
    assert d["miou_drop_points"] > 1 and d["baseline_miou"] == 1.0
    # Bad combinations are refused before any work.
    assert main([onnx_path, "--max-drop", "1", "--data", data]) == 2
    assert "--baseline" in capsys.readouterr().err
    assert main([onnx_path, "--baseline", str(tmp_path / "nope.onnx"), "--data", data]) == 2
    assert "does not exist" in capsys.readouterr().err
