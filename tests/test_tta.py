"""Flip test-time augmentation in the deploy graph, the export and rtseg-eval."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rtseg.core.meta import ModelMeta
from rtseg.models import create_model
from rtseg.models.base import SegModel
from rtseg.models.deploy import DeployGraph


class _MirrorSymmetricNet(SegModel):
    """A stride-1 network whose kernels are left-right symmetric: flip-equivariant, so its
    logits on a mirror-symmetric frame are mirror-symmetric too."""

    name = "mirror_symmetric"

    def __init__(self) -> None:
        super().__init__(num_classes=4, aux=False)
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 4, 3, padding=1)
        with torch.no_grad():
            for conv in (self.a, self.b):
                conv.weight.copy_(0.5 * (conv.weight + conv.weight.flip(-1)))

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _meta(n: int) -> ModelMeta:
    return ModelMeta(model="m", class_names=tuple(f"c{i}" for i in range(n)),
                     palette=tuple((i, i, i) for i in range(n)), mean=(0.5,) * 3, std=(0.25,) * 3)


def _symmetric_frames(h: int, w: int, seed: int = 0) -> torch.Tensor:
    half = np.random.default_rng(seed).integers(0, 256, (1, h, w // 2, 3), dtype=np.uint8)
    return torch.from_numpy(np.concatenate([half, half[:, :, ::-1]], axis=2).copy())


def test_flip_tta_of_a_symmetric_input_equals_the_plain_output() -> None:
    torch.manual_seed(0)
    net = _MirrorSymmetricNet()
    frames = _symmetric_frames(16, 24)
    plain = DeployGraph(net, _meta(4), with_logits=True)
    tta = DeployGraph(net, _meta(4), with_logits=True, tta="flip")
    with torch.no_grad():
        (lp, zp), (lt, zt) = plain(frames), tta(frames)
    torch.testing.assert_close(zt, zp, rtol=1e-5, atol=1e-5)
    assert torch.equal(lt, lp)


def test_flip_tta_is_exactly_mirror_equivariant_for_any_model() -> None:
    # TTA(mirror(x)) == mirror(TTA(x)): the two halves swap roles in the average.
    torch.manual_seed(0)
    graph = DeployGraph(create_model("stdc_efflite0", 5), _meta(5), with_logits=True, tta="flip")
    frames = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8))
    with torch.no_grad():
        _, z = graph(frames)
        _, zm = graph(frames.flip(2))
    torch.testing.assert_close(zm, z.flip(3), rtol=1e-5, atol=1e-5)


def test_unknown_tta_is_refused() -> None:
    from rtseg.core.errors import UserInputError

    with pytest.raises(UserInputError, match="flip"):
        DeployGraph(_MirrorSymmetricNet(), _meta(4), tta="rotate")


def test_export_holds_the_tta_and_records_it(tmp_path) -> None:
    from rtseg.export.onnx_export import export_onnx, read_onnx_meta
    from rtseg.models.deploy import load_for_deploy
    from rtseg.runtime.factory import create_backend

    loaded = load_for_deploy("stdc1", 11, None)
    path = tmp_path / "tta.onnx"
    res = export_onnx(loaded.model, loaded.meta, input_size=(64, 96), path=path, tta="flip")
    assert res.agreement >= 0.999  # ONNX Runtime runs the same two-pass graph as PyTorch
    assert read_onnx_meta(path).extra["tta"] == "flip"
    frames = np.random.default_rng(2).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = DeployGraph(loaded.model, loaded.meta, tta="flip")(torch.from_numpy(frames)).numpy()
    with create_backend("openvino", path, precision="f32") as be:
        got = be.infer(frames)
    assert (got == ref).mean() > 0.999


def test_eval_cli_tta_needs_a_checkpoint(tmp_path, small_onnx, capsys) -> None:
    from rtseg.cli.eval import main

    code = main([str(small_onnx), "--tta", "flip", "--limit", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "rtseg-export --tta flip" in err[0]


def test_scales_tta_averages_the_resized_passes() -> None:
    # With a per-pixel (1x1) network, bilinear down/up-sampling of a constant frame is exact,
    # so every scale pass equals the plain pass and the average equals it too.
    net = _MirrorSymmetricNet()
    net.a, net.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)
    frames = torch.full((1, 64, 96, 3), 77, dtype=torch.uint8)
    with torch.no_grad():
        _, zp = DeployGraph(net, _meta(4), with_logits=True)(frames)
        for mode in ("scales", "flip+scales"):
            _, zt = DeployGraph(net, _meta(4), with_logits=True, tta=mode)(frames)
            torch.testing.assert_close(zt, zp, rtol=1e-5, atol=1e-5)
