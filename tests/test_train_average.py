"""Weight averaging of checkpoints (rtseg-train --average)."""

from __future__ import annotations

import pytest
import torch

from rtseg.cli.train import main
from rtseg.core.errors import UserInputError
from rtseg.core.meta import ModelMeta
from rtseg.models import create_model
from rtseg.models.checkpoint import load_model, save_checkpoint
from rtseg.train.average import average_checkpoints
from rtseg.train.trainer import STATE_FORMAT

CLASSES = ("road", "car", "sky")
PALETTE = ((128, 64, 128), (0, 0, 142), (70, 130, 180))


def _meta(n: int = 3) -> ModelMeta:
    return ModelMeta("bisenetv2", CLASSES[:n] if n <= 3 else tuple(f"c{i}" for i in range(n)),
                     PALETTE[:n] if n <= 3 else tuple((i, i, i) for i in range(n)),
                     (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), input_size=(64, 64))


def _checkpoint(path, seed: int, *, aux: bool = True, n: int = 3):
    torch.manual_seed(seed)
    model = create_model("bisenetv2", n, aux=aux)
    # Distinct BatchNorm statistics per file, so their averaging is checked too.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(seed)
    save_checkpoint(path, model, _meta(n), extra={"val_miou": 0.5, "lineage": [{"file": "phase1.pt"}]})
    return model.state_dict()


def test_average_is_the_elementwise_mean_with_the_first_files_metadata(tmp_path):
    a = _checkpoint(tmp_path / "a.pt", 1)
    b = _checkpoint(tmp_path / "b.pt", 2)
    c = _checkpoint(tmp_path / "c.pt", 3)
    # The third source as an rtseg-train resume state, the way last.pt files are written.
    torch.save({"format": STATE_FORMAT, "iteration": 7, "model": c}, tmp_path / "last.pt")
    msg = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "last.pt"], tmp_path / "soup.pt")
    assert "mean of 3 checkpoints" in msg
    obj = torch.load(tmp_path / "soup.pt", weights_only=True)
    sd = obj["state_dict"]
    for k, v in a.items():
        if v.is_floating_point():
            torch.testing.assert_close(sd[k], (a[k] + b[k] + c[k]) / 3)
        else:
            assert torch.equal(sd[k], v)  # BatchNorm batch counters: the first file's
    assert obj["meta"]["class_names"] == list(CLASSES) and obj["aux"] is True
    lineage = obj["extra"]["lineage"]  # the first file's history, then the first file
    assert lineage[0] == {"file": "phase1.pt"} and lineage[1]["file"] == "a.pt"
    assert set(obj["extra"]) == {"lineage", "averaged_from"}  # the sources' scores do not describe the mean
    assert [e["file"] for e in obj["extra"]["averaged_from"]] == [str(tmp_path / n) for n in ("a.pt", "b.pt", "last.pt")]
    assert all(len(e["sha256"]) == 64 for e in obj["extra"]["averaged_from"])
    loaded = load_model(tmp_path / "soup.pt")  # a normal checkpoint: loads strictly, runs
    assert loaded.meta.class_names == CLASSES
    with torch.no_grad():
        assert loaded.model(torch.zeros(1, 3, 64, 64)).shape[1] == 3


def test_mismatched_or_unusable_sources_are_refused(tmp_path):
    _checkpoint(tmp_path / "a.pt", 1)
    _checkpoint(tmp_path / "noaux.pt", 2, aux=False)
    _checkpoint(tmp_path / "five.pt", 3, n=5)
    torch.save({"format": STATE_FORMAT, "model": {}}, tmp_path / "last.pt")
    torch.save({"something": 1}, tmp_path / "foreign.pt")
    cases = [
        ([tmp_path / "a.pt"], "at least two"),
        ([tmp_path / "a.pt", tmp_path / "noaux.pt"], "other tensors"),
        ([tmp_path / "a.pt", tmp_path / "five.pt"], "has shape"),
        ([tmp_path / "last.pt", tmp_path / "a.pt"], "resume state; put an rtseg checkpoint"),
        ([tmp_path / "a.pt", tmp_path / "foreign.pt"], "neither an rtseg checkpoint"),
        ([tmp_path / "a.pt", tmp_path / "missing.pt"], "does not exist"),
    ]
    for sources, message in cases:
        with pytest.raises(UserInputError, match=message):
            average_checkpoints(sources, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_cli_average(tmp_path, capsys):
    _checkpoint(tmp_path / "a.pt", 1)
    _checkpoint(tmp_path / "b.pt", 2)
    assert main(["--average", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"),
                 "--average-out", str(tmp_path / "soup.pt")]) == 0
    assert "mean of 2 checkpoints" in capsys.readouterr().out
    assert main(["--average", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]) != 0
    assert "--average-out" in capsys.readouterr().err
