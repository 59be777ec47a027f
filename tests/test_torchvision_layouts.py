"""torchvision's segmentation checkpoints: strict loading from the key lists, outputs equal to
torchvision's own, identical labels after export, and one-line refusals of other networks.

Two kinds of synthetic files stand in for the real ones (not redistributable test data):

- ``ckpt_factory.release_state_dict``: every key and shape of the real file, random values;
- ``ckpt_factory.deterministic_state_dict``: the same keys with LCG values that any torch
  version reproduces, on which ``scripts/make_torchvision_fixtures.py`` ran torchvision
  0.29.1 (torch 2.14.1, in a separate venv) and stored its outputs in
  ``tests/data/torchvision_reference.npz``.
"""

from __future__ import annotations

from pathlib import Path

import ckpt_factory as F
import numpy as np
import pytest
import torch

from rtseg.core.datasets_meta import IMAGENET_MEAN, IMAGENET_STD, VOC_CLASSES, VOC_PALETTE
from rtseg.core.errors import CheckpointError
from rtseg.models import create_model
from rtseg.models.checkpoint import load_model
from rtseg.models.layers import resize_to

REFERENCE = Path(__file__).parent / "data" / "torchvision_reference.npz"
#: torchvision's documented parameter counts (21 classes, aux classifier where the release has one).
TORCHVISION_PARAMS = {
    "fcn_resnet50": 35_322_218, "fcn_resnet101": 54_314_346, "deeplabv3_resnet50": 42_004_074,
    "deeplabv3_resnet101": 60_996_202, "deeplabv3_mobilenet_v3_large": 11_029_328,
    "lraspp_mobilenet_v3_large": 3_221_538,
}
pytestmark = pytest.mark.slow  # full-size ResNet-101 files and exports (a few seconds each)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory):
    """layout -> synthetic release file (written on first use)."""
    root = tmp_path_factory.mktemp("tv")
    cache: dict[str, Path] = {}

    def get(layout: str) -> Path:
        if layout not in cache:
            cache[layout] = F.write_release(root / f"{layout}.pth", layout)
        return cache[layout]

    return get


def _aux_output(model, x: torch.Tensor) -> torch.Tensor:
    low, _ = model.backbone(x)
    return resize_to(model.aux_classifier(low), x.shape[-2:])


@pytest.mark.parametrize("layout", F.TORCHVISION_LAYOUTS)
def test_outputs_match_torchvision(layout: str, reference) -> None:
    """Logits (upsampled to the input, bilinear, align_corners=False), labels and the aux head
    equal torchvision's on the same weights and input."""
    name, heads = F.LAYOUTS[layout][1], F.LAYOUTS[layout][2]
    model = create_model(name, 21, aux=bool(heads)).eval()
    model.load_state_dict(F.deterministic_state_dict(layout), strict=True)
    x = F.deterministic_input(tuple(int(v) for v in reference["input_shape"]))
    step = int(reference["step"])
    with torch.no_grad():
        out = model(x)
        ref = reference[f"{layout}/out"]
        scale = float(np.abs(ref).max())
        np.testing.assert_allclose(out[:, :, ::step, ::step].numpy(), ref, rtol=0, atol=1e-5 * scale)
        # Labels equal everywhere but at ties within float rounding (a top-2 margin of ~1e-8 here):
        # those flip with the summation order, i.e. with the thread count torch runs at.
        top2 = torch.topk(out, 2, dim=1).values.numpy()
        decided = (top2[:, 0] - top2[:, 1]) > 1e-6 * scale
        labels = out.argmax(1).numpy()
        assert decided.mean() > 0.99
        assert np.array_equal(labels[decided], reference[f"{layout}/labels"][decided])
        if heads:
            aux = _aux_output(model, x)[:, :, ::step, ::step].numpy()
            np.testing.assert_allclose(aux, reference[f"{layout}/aux"], rtol=0, atol=1e-5 * scale)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("layout", F.TORCHVISION_LAYOUTS)
def test_release_file_loads_and_keeps_its_labels_after_export(layout: str, files, tmp_path: Path) -> None:
    import onnxruntime as ort

    from rtseg.export.onnx_export import export_onnx, read_onnx_meta, verification_frames
    from rtseg.models.deploy import DeployGraph

    name, heads = F.LAYOUTS[layout][1], F.LAYOUTS[layout][2]
    path = files(layout)
    loaded = load_model(path)  # --weights FILE alone: the layout is detected from the keys
    report, meta = loaded.report, loaded.meta
    assert report.model == name and report.layout.startswith("torchvision ") and report.num_classes == 21
    assert report.aux == bool(heads) and report.n_dropped == 0
    assert meta.class_names == VOC_CLASSES and meta.palette == VOC_PALETTE and meta.dataset == "voc"
    assert meta.mean == IMAGENET_MEAN and meta.std == IMAGENET_STD and meta.channel_order == "RGB"
    file_sd = torch.load(path, map_location="cpu", weights_only=True)
    model_sd = loaded.model.state_dict()
    assert set(file_sd) == set(model_sd) and all(torch.equal(model_sd[k], v) for k, v in file_sd.items())

    size = (64, 80)
    res = export_onnx(loaded.model, meta, input_size=size, path=tmp_path / f"{name}.onnx", verify=False)
    assert read_onnx_meta(res.path) == meta.with_(input_size=size)
    graph = DeployGraph(loaded.model, meta).eval()
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    for f in verification_frames(2, *size):
        with torch.no_grad():
            ref = graph(torch.from_numpy(f[None].copy())).numpy()
        assert np.array_equal(sess.run(["labels"], {"frames": f[None]})[0], ref)


def test_aux_classifier_is_optional_and_training_only(files, tmp_path: Path) -> None:
    sd = torch.load(files("tv_deeplabv3_mobilenet_v3_large"), map_location="cpu", weights_only=True)
    lean = load_model(F.write(tmp_path / "lean.pth", F.without_aux(sd, "tv_deeplabv3_mobilenet_v3_large")))
    full = load_model(files("tv_deeplabv3_mobilenet_v3_large"))
    assert not lean.model.aux and full.model.aux and not hasattr(lean.model, "aux_classifier")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(lean.model(x), full.model(x))  # the eval path never runs the aux head
    full.model.train()
    assert set(full.model(torch.randn(2, 3, 64, 64))) == {"out", "aux"}


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_other_networks_are_refused_in_one_line(files, tmp_path: Path) -> None:
    # An ImageNet classifier is not a segmentation checkpoint.
    with pytest.raises(CheckpointError) as e:
        load_model(files("tv_resnet18_imagenet"))
    msg = _one_line(e)
    assert "no known layout" in msg and "torchvision DeepLabv3-ResNet50 layout" in msg
    # The right family but another network than asked for.
    with pytest.raises(CheckpointError) as e:
        load_model(files("tv_deeplabv3_resnet50"), model="fcn_resnet50")
    msg = _one_line(e)
    assert "deeplabv3_resnet50 file" in msg and "pass --model deeplabv3_resnet50" in msg
    # A damaged file: a head tensor of the wrong shape.
    sd = torch.load(files("tv_lraspp_mobilenet_v3_large"), map_location="cpu", weights_only=True)
    sd["classifier.cbr.0.weight"] = torch.zeros(64, 960, 1, 1)
    with pytest.raises(CheckpointError) as e:
        load_model(F.write(tmp_path / "bad.pth", sd))
    assert "classifier.cbr.0.weight" in _one_line(e)
    # Another class count is someone's fine-tune: loads, without claiming VOC names.
    sd = F.release_state_dict("tv_lraspp_mobilenet_v3_large")
    for k in ("classifier.low_classifier.weight", "classifier.high_classifier.weight"):
        sd[k] = sd[k][:5]
    for k in ("classifier.low_classifier.bias", "classifier.high_classifier.bias"):
        sd[k] = sd[k][:5]
    five = load_model(F.write(tmp_path / "five.pth", sd))
    assert five.meta.num_classes == 5 and five.meta.dataset is None
