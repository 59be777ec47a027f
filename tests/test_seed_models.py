"""What the seed systems' papers prescribe, checked directly: unpooling from the recorded switches
(and its export on ONNX Runtime and OpenVINO), the context module's identity initialisation,
FCN's bilinear-initialised upsampling and skip alignment, DeepLabv3's output stride, multi-grid
and ASPP rates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _paths import SAMPLE_CLIP

from rtseg.core.errors import UserInputError
from rtseg.models import create_model
from rtseg.models.dilation import ContextModule
from rtseg.models.fcn import bilinear_kernel, upsampler
from rtseg.models.unpool import max_pool_with_indices, max_unpool

# --- unpooling ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(8, 8), (45, 30), (23, 15), (1, 7)])
def test_unpool_puts_each_value_back_at_its_recorded_index(size):
    g = torch.Generator().manual_seed(sum(size))
    x = torch.randn(2, 3, *size, generator=g)
    values, indices = max_pool_with_indices(x)
    assert values.shape[-2:] == tuple((s + 1) // 2 for s in size)  # ceil mode keeps odd edges
    out = max_unpool(values, indices, x.shape[-2:])
    # Independent reference: PyTorch's own max_unpool2d (eager), and the definition itself.
    assert torch.equal(out, F.max_unpool2d(values, indices, 2, 2, output_size=x.shape[-2:]))
    flat = out.flatten(2)
    assert torch.equal(flat.gather(2, indices.flatten(2)), values.flatten(2))
    kept = torch.zeros_like(flat, dtype=torch.bool).scatter_(2, indices.flatten(2), True)
    assert (flat[~kept] == 0).all() and torch.equal(flat[kept], x.flatten(2)[kept])


def test_unpooled_segnet_runs_on_onnxruntime_and_openvino(tmp_path):
    """segnet_basic's deploy graph (4 pool/unpool pairs at 72x96: 9x12 at the bottom) on both backends."""
    import onnxruntime as ort
    import openvino as ov

    from rtseg.core.datasets_meta import default_classes
    from rtseg.core.meta import ModelMeta
    from rtseg.export.onnx_export import export_onnx, verification_frames
    from rtseg.models.deploy import DeployGraph

    torch.manual_seed(0)
    model = create_model("segnet_basic", 11, channels=16).eval()
    names, palette = default_classes(11)
    meta = ModelMeta("segnet_basic", names, palette, model.input_mean, model.input_std)
    size = (72, 96)
    res = export_onnx(model, meta, input_size=size, path=tmp_path / "segnet_basic.onnx", with_logits=True)
    frames = verification_frames(3, *size, SAMPLE_CLIP)
    graph = DeployGraph(model, meta, with_logits=True).eval()
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(str(res.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for f in frames:
        with torch.no_grad():
            labels, logits = graph(torch.from_numpy(f[None].copy()))
        ort_labels, ort_logits = sess.run(["labels", "logits"], {"frames": f[None]})
        ov_out = compiled(f[None])
        ov_labels, ov_logits = ov_out[compiled.output("labels")], ov_out[compiled.output("logits")]
        scale = float(logits.abs().max())
        for got_labels, got_logits in ((ort_labels, ort_logits), (ov_labels, ov_logits)):
            # A float-rounding near-tie inside a pooling window may flip a switch (the value moves
            # one pixel) and the 7x7 decoder spreads it locally: most, not all, elements match.
            close = np.abs(got_logits - logits.numpy()) <= 1e-4 * scale
            assert close.mean() >= 0.98
            assert (got_labels == labels.numpy()).mean() >= 0.995


# --- the context module ----------------------------------------------------------------------


def test_basic_context_module_starts_as_the_identity():
    torch.manual_seed(0)
    module = ContextModule(11, "basic").eval()
    x = torch.rand(2, 11, 23, 30) * 5  # non-negative scores pass through the ReLUs unchanged
    with torch.no_grad():
        assert torch.equal(module(x), x)
        # Negative scores are truncated by the first ReLU, as in the paper.
        y = module(x - 2.5)
    assert torch.equal(y, (x - 2.5).clamp(min=0))


def test_large_context_module_identity_groups_and_noise():
    module = ContextModule(4, "large").eval()
    widths = [c.out_channels for c in module.convs]
    assert widths == [8, 8, 16, 32, 64, 128, 128] and module.final.out_channels == 4
    assert [c.dilation[0] for c in module.convs] == [1, 1, 2, 4, 8, 16, 1]
    w = module.convs[2].weight.detach()  # 8 -> 16 channels: C / c_out = 0.25 where groups match
    assert float(w[5, 2, 1, 1]) == 0.25 and float(w[5, 3, 1, 1]) == 0.25  # output 5 and inputs 2,3: group 1
    off = torch.ones_like(w, dtype=torch.bool)
    off[:, :, 1, 1] = False
    assert 0 < w[off].abs().max() < 0.01 * 0.25  # the noise: sigma << C / c_out
    x = torch.rand(1, 4, 17, 21)
    with torch.no_grad():
        torch.testing.assert_close(module(x), x, atol=0.05, rtol=0.05)
        module.reset_identity(noise=0.0)
        torch.testing.assert_close(module(x), x, atol=1e-5, rtol=1e-5)  # exact without noise


def test_dilation8_front_end_is_stride_8_and_context_keeps_its_size():
    torch.manual_seed(0)
    model = create_model("dilation8", 11, width=8).eval()
    with torch.no_grad():
        scores = model.frontend(torch.randn(1, 3, 360, 480))
        assert scores.shape == (1, 11, 45, 60)
        assert model.context(scores).shape == scores.shape
    with pytest.raises(UserInputError):
        create_model("dilation8", 11, context="huge")


# --- FCN ---------------------------------------------------------------------------------------


def test_fcn_upsampling_starts_bilinear():
    """A bilinear-initialised x f transposed convolution equals bilinear resizing (align_corners=False)
    away from the border it cannot see past."""
    for factor in (2, 8, 32):
        up = upsampler(3, factor)
        x = torch.randn(1, 3, 6, 7)
        with torch.no_grad():
            y = up(x)
        ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        assert y.shape == ref.shape
        m = factor  # one input cell of margin
        torch.testing.assert_close(y[..., m:-m, m:-m], ref[..., m:-m, m:-m], atol=1e-5, rtol=1e-5)
    k = bilinear_kernel(2, 4)
    assert float(k[0, 1].abs().sum()) == 0.0  # channels never mix


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
def test_fcn_skips_start_at_zero_and_sizes_line_up(name):
    torch.manual_seed(0)
    model = create_model(name, 5, width=8).eval()
    for attr in ("score_pool4", "score_pool3"):
        if hasattr(model, attr):
            assert float(getattr(model, attr).weight.detach().abs().sum()) == 0.0
    for size in ((64, 64), (360, 480), (72, 104)):  # multiples of 32, and of 8 only
        with torch.no_grad():
            assert model(torch.randn(1, 3, *size)).shape == (1, 5, *size)


# --- DeepLabv3 -----------------------------------------------------------------------------------


def _rates(model) -> list[int]:
    return [b.conv2.dilation[0] for b in model.backbone.layer4]


def test_deeplabv3_output_stride_multigrid_and_aspp_rates():
    tv = create_model("deeplabv3_resnet50", 21, width=16).eval()
    assert tv.rates == (12, 24, 36) and _rates(tv) == [2, 4, 4]  # torchvision's configuration
    os16 = create_model("deeplabv3_resnet50", 21, width=16, output_stride=16, multi_grid=(1, 2, 4)).eval()
    assert os16.rates == (6, 12, 18) and _rates(os16) == [2, 4, 8]
    os8 = create_model("deeplabv3_resnet50", 21, width=16, output_stride=8, multi_grid=(1, 2, 4)).eval()
    assert os8.rates == (12, 24, 36) and _rates(os8) == [4, 8, 16]
    assert [c[0].dilation[0] for c in os8.classifier[0].convs[1:4]] == [12, 24, 36]
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        assert tv.backbone(x)[1].shape[-2:] == (8, 10)  # OS 8
        assert os16.backbone(x)[1].shape[-2:] == (4, 5)  # OS 16
        assert os16(x).shape == (1, 21, 64, 80)
    # The options change no key or shape: torchvision's files load into every configuration.
    assert {k: v.shape for k, v in tv.state_dict().items()} == {k: v.shape for k, v in os16.state_dict().items()}
    for bad in ({"output_stride": 4}, {"multi_grid": (1, 2)}, {"aspp_rates": (6, 12)}):
        with pytest.raises(UserInputError):
            create_model("deeplabv3_resnet50", 21, width=16, **bad)
