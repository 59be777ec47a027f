"""Export of every registered model as the fused deploy graph, and ONNX/PyTorch parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from _paths import SAMPLE_CLIP, SMALL_SIZE

from rtseg.core.errors import ExportError, UserInputError
from rtseg.core.meta import ONNX_META_KEY
from rtseg.export.onnx_export import PARITY_THRESHOLD, export_onnx, read_onnx_meta, verification_frames
from rtseg.models import get_entry, list_models
from rtseg.models.deploy import DeployGraph, load_for_deploy, parse_size

#: Families whose export the shared ModelTester checks at a reduced width (tests/test_models.py)
#: and, for torchvision's layouts, at full size from synthetic checkpoints (test_torchvision_layouts.py):
#: full-size random VGG16/ResNet exports are hundreds of MB each.
SEED_FAMILIES = {"FCN", "SegNet", "DeconvNet", "Dilation", "DeepLabv3", "LR-ASPP"}
REALTIME_MODELS = [n for n in list_models() if get_entry(n).family not in SEED_FAMILIES]


@pytest.mark.parametrize("name", REALTIME_MODELS)
def test_every_model_exports_with_parity(name, tmp_path):
    loaded = load_for_deploy(name, 19, None)
    res = export_onnx(loaded.model, loaded.meta, input_size=SMALL_SIZE, path=tmp_path / f"{name}.onnx",
                      verify_source=SAMPLE_CLIP)
    assert res.agreement >= PARITY_THRESHOLD
    proto = onnx.load(str(res.path))
    assert [i.name for i in proto.graph.input] == ["frames"]
    assert [o.name for o in proto.graph.output] == ["labels"]
    in_t = proto.graph.input[0].type.tensor_type
    assert in_t.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in in_t.shape.dim] == [1, *SMALL_SIZE, 3]
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert proto.opset_import[0].version == 17
    assert read_onnx_meta(res.path) == loaded.meta.with_(input_size=SMALL_SIZE)
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_deploy_graph_preprocessing_matches_manual_normalisation():
    loaded = load_for_deploy("bisenetv2", 11, None)
    graph = DeployGraph(loaded.model, loaded.meta).eval()
    frames = verification_frames(2, *SMALL_SIZE)
    x = graph.normalize(torch.from_numpy(frames))
    rgb = frames[..., ::-1].astype(np.float32) / 255.0
    manual = (rgb - np.array(loaded.meta.mean, np.float32)) / np.array(loaded.meta.std, np.float32)
    np.testing.assert_allclose(x.permute(0, 2, 3, 1).numpy(), manual, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        labels = graph(torch.from_numpy(frames))
        ref = loaded.model(torch.from_numpy(manual).permute(0, 3, 1, 2)).argmax(1).to(torch.uint8)
    assert labels.dtype == torch.uint8 and labels.shape == (2, *SMALL_SIZE)
    assert torch.equal(labels, ref)


def test_logits_output_and_batch(tmp_path):
    loaded = load_for_deploy("stdc1", 5, None)
    res = export_onnx(loaded.model, loaded.meta, input_size=(64, 64), batch=2, path=tmp_path / "b2.onnx",
                      with_logits=True)
    proto = onnx.load(str(res.path))
    assert [o.name for o in proto.graph.output] == ["labels", "logits"]
    assert res.input_shape == (2, 64, 64, 3)
    props = {p.key for p in proto.metadata_props}
    assert ONNX_META_KEY in props


@pytest.mark.parametrize("text", ["361x480", "360x20", "360", "axb", "0x0"])
def test_bad_sizes_are_refused_with_advice(text):
    with pytest.raises(UserInputError) as e:
        parse_size(text)
    assert "\n" not in str(e.value)


def test_failed_verification_leaves_nothing(tmp_path, monkeypatch):
    import rtseg.export.onnx_export as ox

    # A real export whose parity check is judged against an impossible bar.
    monkeypatch.setattr(ox, "PARITY_THRESHOLD", 1.01)
    loaded = load_for_deploy("stdc1", 5, None)
    with pytest.raises(ExportError, match="agree on only"):
        export_onnx(loaded.model, loaded.meta, input_size=(64, 64), path=tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
