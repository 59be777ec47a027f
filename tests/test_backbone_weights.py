"""``--backbone-weights``: ImageNet files in each public layout initialise the encoder
strictly; a file of another network is refused in one line."""

from __future__ import annotations

import pytest
import torch
from ckpt_factory import IMAGENET_LAYOUTS, imagenet_state_dict, write_imagenet

from rtseg.core.errors import CheckpointError, UserInputError
from rtseg.models import create_model
from rtseg.models.backbone_weights import load_encoder_weights, packaged_imagenet_file


@pytest.mark.parametrize("layout", sorted(IMAGENET_LAYOUTS))
def test_each_layout_loads_into_its_encoder(layout: str, tmp_path) -> None:
    _, model_name, _ = IMAGENET_LAYOUTS[layout]
    path = write_imagenet(tmp_path / f"{layout}.tar", layout, seed=3)
    model = create_model(model_name, 11, aux=True)
    report = load_encoder_weights(model, path)
    sd = imagenet_state_dict(layout, seed=3)
    enc = model.encoder.state_dict()
    assert report.loaded == len(enc)
    # Every encoder tensor is the file's (same seed -> same values), keys as the file names them
    # (STDC's ``features.N`` inside ``cp.backbone``, torchvision's names inside ``cp.resnet``).
    for k, v in enc.items():
        assert torch.equal(v, sd[k].to(v.dtype)), k
    dropped = [k for keys in report.dropped.values() for k in keys]
    assert all(k.startswith(("fc.", "conv_last.", "bn.", "linear.", "x")) for k in dropped)
    assert "\n" not in report.summary()


@pytest.mark.parametrize(("layout", "model_name", "needle"), [
    ("stdcnet813", "stdc2", "STDCNet813"),
    ("stdcnet1446", "stdc1", "STDCNet1446"),
    ("resnet18", "stdc1", "STDCNet"),
    ("stdcnet813", "bisenetv1", "ResNet"),
])
def test_a_file_of_another_network_is_refused(layout, model_name, needle, tmp_path) -> None:
    path = write_imagenet(tmp_path / "other.tar", layout)
    model = create_model(model_name, 11)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_encoder_weights(model, path)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and "other.tar" in msg
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "nothing may be loaded"


def test_a_damaged_stdc_alias_is_refused(tmp_path) -> None:
    sd = {k: v.clone() for k, v in imagenet_state_dict("stdcnet813").items()}
    alias = next(k for k in sd if k.startswith("x8."))
    sd[alias] += 1
    path = tmp_path / "damaged.tar"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match="differs"):
        load_encoder_weights(create_model("stdc1", 11), path)


def test_models_without_packaged_weights(tmp_path) -> None:
    model = create_model("stdc1", 11)
    assert packaged_imagenet_file(model, required=False) is None
    with pytest.raises(UserInputError, match="--backbone-weights PATH"):
        packaged_imagenet_file(model, required=True)
    # BiSeNetV2 has no separable pretrained encoder.
    path = write_imagenet(tmp_path / "r18.pth", "resnet18")
    with pytest.raises(CheckpointError, match="no separable encoder"):
        load_encoder_weights(create_model("bisenetv2", 11), path)


def test_cli_refuses_a_foreign_file_before_training(tmp_path, capsys) -> None:
    from rtseg.cli.train import main
    from rtseg.data.synth import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", splits={"train": 2, "val": 1}, size=(64, 80), num_classes=11)
    path = write_imagenet(tmp_path / "STDCNet1446_76.47.tar", "stdcnet1446")
    out = tmp_path / "run"
    code = main(["--model", "stdc1", "--data", str(data), "--out", str(out), "--crop", "64x64", "--iters", "2",
                 "--batch-size", "2", "--warmup-iters", "0", "--workers", "0", "--backbone-weights", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "STDCNet1446" in err[0]
    assert not (out / "last.pt").exists()
