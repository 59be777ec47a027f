"""Checkpoint loading: every release layout, every wrapper/prefix/quirk, our own
format's round trip, and the one-line errors for files that must be refused.

Release files are synthesised from the real files' key/shape lists
(``tests/ckpt_factory.py``) and written once per session.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import ckpt_factory as F
import pytest
import torch

from rtseg.core.datasets_meta import (
    CAMVID_CLASSES,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    COINCHEUNG_CITYSCAPES_MEAN,
    COINCHEUNG_CITYSCAPES_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from rtseg.core.errors import CheckpointError, UserInputError
from rtseg.models import create_model
from rtseg.models import stdc as stdc_module
from rtseg.models.checkpoint import (
    RTSEG_LAYOUT,
    build_model,
    load_model,
    release_formats,
    save_checkpoint,
)

# layout -> (model, mean, std, dropped alias count, dropped classifier count, filled count)
EXPECT = {
    "stdc1_seg": ("stdc1", IMAGENET_MEAN, IMAGENET_STD, 174, 13, 15),
    "stdc2_seg": ("stdc2", IMAGENET_MEAN, IMAGENET_STD, 318, 13, 15),
    "bisenetv1": ("bisenetv1", COINCHEUNG_CITYSCAPES_MEAN, COINCHEUNG_CITYSCAPES_STD, 0, 0, 0),
    "bisenetv2": ("bisenetv2", COINCHEUNG_CITYSCAPES_MEAN, COINCHEUNG_CITYSCAPES_STD, 0, 0, 0),
}
FAMILY_MODULE = {"stdc1_seg": "rtseg.models.stdc", "stdc2_seg": "rtseg.models.stdc",
                 "bisenetv1": "rtseg.models.bisenetv1", "bisenetv2": "rtseg.models.bisenetv2"}
X = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))


def _need_family(layout: str) -> None:
    # The BiSeNet families are written in other modules; their tests run once those exist.
    mod = pytest.importorskip(FAMILY_MODULE[layout])
    if not getattr(mod, "RELEASE_FORMATS", None):
        pytest.skip(f"{FAMILY_MODULE[layout]} has no RELEASE_FORMATS yet")


@pytest.fixture(scope="session")
def release_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("release")


@pytest.fixture(scope="session")
def release_file(release_dir: Path):
    """layout -> path of its synthetic release file, written on first use."""
    cache: dict[str, Path] = {}

    def get(layout: str) -> Path:
        if layout not in cache:
            cache[layout] = F.write_release(release_dir / f"{layout}.pth", layout)
        return cache[layout]

    return get


@pytest.fixture(scope="session")
def stdc1_file(release_file) -> Path:
    return release_file("stdc1_seg")


@pytest.fixture(scope="session")
def _stdc1_sd_cache() -> dict[str, torch.Tensor]:
    return F.release_state_dict("stdc1_seg")


@pytest.fixture
def stdc1_sd(_stdc1_sd_cache) -> dict[str, torch.Tensor]:
    """A fresh dict over the session's synthetic STDC1 tensors (replace entries, never edit tensors in place)."""
    return dict(_stdc1_sd_cache)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, f"error message is not one line: {msg!r}"
    return msg


@torch.no_grad()
def _run(model: torch.nn.Module) -> torch.Tensor:
    return model(X)


# --- the model against the release key lists ---------------------------------------


@pytest.mark.parametrize("layout", ["stdc1_seg", "stdc2_seg"])
def test_stdc_model_has_the_release_layout(layout: str) -> None:
    """aux=True model == file keys/shapes minus aliases and classifier, plus the 15 BN counters."""
    name = EXPECT[layout][0]
    file_keys = dict(F.read_keys(layout))
    kept = {k: s for k, s in file_keys.items()
            if not stdc_module._ALIAS.match(k) and not k.startswith(stdc_module._IMAGENET_PREFIXES)}
    with torch.device("meta"):
        model = create_model(name, 19, aux=True)
    model_keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    extra = sorted(set(model_keys) - set(kept))
    assert set(kept) <= set(model_keys)
    assert all(model_keys[k] == kept[k] for k in kept)
    assert len(extra) == 15 and all(k.endswith(".num_batches_tracked") and not k.startswith("cp.backbone.")
                                    for k in extra)
    assert len(file_keys) - len(kept) == EXPECT[layout][3] + EXPECT[layout][4]


def test_stdc_sizes_multiple_of_8_not_32_and_train_outputs() -> None:
    torch.manual_seed(0)
    model = create_model("stdc1", 11, aux=True).eval()
    assert model.cp.backbone.out_channels == (3, 32, 64, 256, 512, 1024)
    with torch.no_grad():
        # 360x480: the 1/32 map is 12x15 and the 1/16 map 23x30, so every merge needs explicit sizes.
        y = model(torch.randn(1, 3, 360, 480))
    assert y.shape == (1, 11, 360, 480) and torch.isfinite(y).all()
    model.train()
    out = model(torch.randn(2, 3, 72, 104))
    assert set(out) == {"out", *model.train_outputs} == {"out", "aux16", "aux32", "detail8"}
    assert out["out"].shape == out["aux16"].shape == out["aux32"].shape == (2, 11, 72, 104)
    assert out["detail8"].shape == (2, 1, 9, 13)
    lean = create_model("stdc2", 19).train()
    assert set(lean(torch.randn(2, 3, 64, 64))) == {"out"}


# --- every release layout loads strictly ---------------------------------------------


@pytest.mark.parametrize("layout", list(EXPECT))
def test_release_layout_loads(layout: str, release_file) -> None:
    _need_family(layout)
    name, mean, std, n_alias, n_cls, n_filled = EXPECT[layout]
    path = release_file(layout)
    loaded = load_model(path)
    model, meta, report = loaded.model, loaded.meta, loaded.report

    fmt = next(f for f in release_formats() if f.model == name)
    assert report.layout == fmt.name and report.model == name == model.name == meta.model
    assert report.num_classes == model.num_classes == meta.num_classes == 19
    assert report.aux and model.aux and not model.training
    assert report.wrapper is None and report.prefix_stripped is None
    assert report.n_dropped == n_alias + n_cls
    if n_alias:
        assert len(report.dropped[stdc_module.REASON_ALIAS]) == n_alias
        assert len(report.dropped[stdc_module.REASON_IMAGENET]) == n_cls
    assert report.n_filled == n_filled
    summary = report.summary()
    assert path.name in summary and name in summary and "\n" not in summary
    if n_alias:
        assert f"{n_alias} alias" in summary and "ImageNet classifier" in summary and "15" in summary

    assert meta.class_names == CITYSCAPES_CLASSES and meta.palette == CITYSCAPES_PALETTE
    assert meta.mean == mean and meta.std == std and meta.channel_order == "RGB"
    assert meta.dataset == "cityscapes" and meta.trained and path.name in (meta.weights or "")
    assert meta.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    # Every tensor of the file that was not reported as dropped is in the model, unchanged.
    file_sd = torch.load(path, map_location="cpu", weights_only=True)
    dropped = {k for keys in report.dropped.values() for k in keys}
    model_sd = model.state_dict()
    for k, v in file_sd.items():
        if k not in dropped:
            assert torch.equal(model_sd[k], v), k
    # ...including the final classifier (the one tensor whose first dim is the class count).
    classifiers = [k for k, v in file_sd.items() if v.dim() == 4 and v.shape[0] == 19 and k not in dropped
                   and not any(k.startswith(h + ".") for h in F.LAYOUTS[layout][2])]
    assert len(classifiers) == 1 and torch.equal(model_sd[classifiers[0]], file_sd[classifiers[0]])

    y1, y2 = _run(model), _run(model)
    assert y1.shape == (1, 19, 64, 96)
    assert torch.isfinite(y1).all() and torch.equal(y1, y2)


def test_stdc_aliases_share_values_in_the_synthetic_file(stdc1_file: Path) -> None:
    # The factory must reproduce the real files' quirk, or the converter test above proves little.
    sd = torch.load(stdc1_file, map_location="cpu", weights_only=True)
    a, b = sd["cp.backbone.x16.0.4.conv_list.1.conv.weight"], sd["cp.backbone.features.4.conv_list.1.conv.weight"]
    assert a.data_ptr() == b.data_ptr()


# --- variants users' files come in -----------------------------------------------------


def test_module_prefix_and_legacy_serialisation(stdc1_file: Path, stdc1_sd, tmp_path: Path) -> None:
    ref = _run(load_model(stdc1_file).model)
    sd = stdc1_sd
    path = tmp_path / "dp.pth"
    torch.save(F.with_module_prefix(sd), path, _use_new_zipfile_serialization=False)
    loaded = load_model(path, model="stdc1", num_classes=19)
    assert loaded.report.prefix_stripped == "module." and "'module.' stripped" in loaded.report.summary()
    assert torch.equal(_run(loaded.model), ref)


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "model_state_dict", "net"])
def test_wrapped_training_checkpoint(wrapper: str, stdc1_sd, tmp_path: Path) -> None:
    sd = F.without_aux(stdc1_sd, "stdc1_seg")
    path = F.write(tmp_path / "train.pth", {"epoch": 7, "best_miou": 0.71, wrapper: F.with_module_prefix(sd),
                                            "optimizer": {"state": {}, "param_groups": [{"lr": 0.01}]}})
    loaded = load_model(path)
    assert loaded.report.wrapper == wrapper and loaded.report.prefix_stripped == "module."
    assert torch.equal(loaded.model.state_dict()["conv_out.conv_out.weight"], sd["conv_out.conv_out.weight"])


@pytest.mark.parametrize("layout", list(EXPECT))
def test_without_aux_heads_loads_inference_model(layout: str, tmp_path: Path) -> None:
    _need_family(layout)
    sd = F.without_aux(F.release_state_dict(layout), layout)
    loaded = load_model(F.write(tmp_path / "lean.pth", sd))
    assert not loaded.report.aux and not loaded.model.aux
    assert loaded.model.train_outputs == ()
    for head in F.LAYOUTS[layout][2]:
        assert not hasattr(loaded.model, head)
    assert torch.isfinite(_run(loaded.model)).all()


def test_missing_num_batches_tracked_is_filled_and_reported(stdc1_sd, tmp_path: Path) -> None:
    sd = F.without_num_batches_tracked(stdc1_sd)
    loaded = load_model(F.write(tmp_path / "old.pth", sd))
    counters = [k for k in loaded.model.state_dict() if k.endswith("num_batches_tracked")]
    assert loaded.report.n_filled == len(counters) > 15
    assert all(int(loaded.model.state_dict()[k]) == 0 for k in counters)


# --- our own format ----------------------------------------------------------------------


def test_own_format_round_trip(stdc1_file: Path, tmp_path: Path) -> None:
    src = load_model(stdc1_file)
    out = save_checkpoint(tmp_path / "ours" / "stdc1.pth", src.model, src.meta, extra={"epoch": 3, "miou": 0.5})
    assert [p.name for p in out.parent.iterdir()] == ["stdc1.pth"]  # atomic: no temporary left behind
    raw = torch.load(out, map_location="cpu", weights_only=True)
    assert raw["format"] == "rtseg-checkpoint" and raw["version"] == 1 and raw["meta"] == src.meta.to_dict()

    back = load_model(out, model="stdc1", num_classes=19)
    assert back.report.layout.startswith(RTSEG_LAYOUT) and back.report.n_dropped == back.report.n_filled == 0
    assert back.model.aux and back.extra == {"epoch": 3, "miou": 0.5}
    # Identical metadata, except the hash, which always names the file actually loaded.
    assert back.meta.with_(weights_sha256=None) == src.meta.with_(weights_sha256=None)
    assert back.meta.weights_sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert torch.equal(_run(back.model), _run(src.model))


def test_untrained_model_round_trip_keeps_its_classes(tmp_path: Path) -> None:
    built = build_model("stdc2", 11, None)
    assert not built.meta.trained and built.meta.class_names == CAMVID_CLASSES
    assert built.meta.mean == IMAGENET_MEAN and not built.model.training
    path = save_checkpoint(tmp_path / "camvid.pth", built.model, built.meta)
    back = build_model("stdc2", 11, path)
    assert not back.meta.trained and back.meta.class_names == CAMVID_CLASSES and not back.model.aux
    assert torch.equal(_run(back.model), _run(built.model))
    with pytest.raises(CheckpointError) as e:
        load_model(path, num_classes=19)
    assert "11 classes" in _one_line(e)


def test_fp16_weights_and_build_model_from_file(stdc1_file: Path, tmp_path: Path) -> None:
    """FP16 copies (what a training run ships) load into the float32 model; build_model passes through."""
    src = load_model(stdc1_file)
    path = save_checkpoint(tmp_path / "full.pth", src.model, src.meta)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    raw["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in raw["state_dict"].items()}
    half = F.write(tmp_path / "half.pth", raw)
    loaded = build_model(None, None, half)
    assert loaded.model.conv_out.conv_out.weight.dtype == torch.float32
    assert torch.equal(loaded.model.conv_out.conv_out.weight, src.model.conv_out.conv_out.weight.half().float())
    y, ref = _run(loaded.model), _run(src.model)
    assert torch.isfinite(y).all() and (y - ref).abs().max() < 0.05 * ref.abs().max()
    with pytest.raises(UserInputError):
        build_model("stdc1", None, None)


def test_save_checkpoint_refuses_mismatched_meta(stdc1_file: Path, tmp_path: Path) -> None:
    src = load_model(stdc1_file)
    with pytest.raises(UserInputError):
        save_checkpoint(tmp_path / "x.pth", src.model, src.meta.with_(model="stdc2"))
    with pytest.raises(UserInputError):
        save_checkpoint(tmp_path / "x.pth", src.model, src.meta, extra={"f": object()})
    assert not list(tmp_path.iterdir())


def test_loading_always_uses_cpu_map_location_and_weights_only(stdc1_file: Path, monkeypatch) -> None:
    # GPU-saved tensors cannot be made here; the promise is that every load maps to CPU.
    seen: list[dict] = []
    real = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_model(stdc1_file)
    assert seen and all(k.get("map_location") == "cpu" and k.get("weights_only") is True for k in seen)


# --- files that must be refused ------------------------------------------------------------


def test_wrong_model_name(stdc1_file: Path) -> None:
    with pytest.raises(CheckpointError) as e:
        load_model(stdc1_file, model="bisenetv2")
    msg = _one_line(e)
    assert "is a stdc1 file" in msg and "19 classes" in msg and "not bisenetv2" in msg
    assert "pass --model stdc1" in msg


def test_bisenetv2_file_as_stdc1(release_file) -> None:
    _need_family("bisenetv2")
    with pytest.raises(CheckpointError) as e:
        load_model(release_file("bisenetv2"), model="stdc1")
    msg = _one_line(e)
    assert "bisenetv2 file" in msg and "19 classes" in msg and "pass --model bisenetv2" in msg


def test_wrong_class_count(stdc1_file: Path) -> None:
    with pytest.raises(CheckpointError) as e:
        load_model(stdc1_file, num_classes=11)
    msg = _one_line(e)
    assert "19 classes" in msg and "11" in msg and "--num-classes" in msg


def test_unknown_layout(tmp_path: Path) -> None:
    path = F.write(tmp_path / "resnet.pth", {"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(2, 8)})
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    msg = _one_line(e)
    assert "no known layout" in msg and "official STDC-Seg release layout (STDC1" in msg and "conv1.weight" in msg


def test_missing_inference_key(stdc1_sd, tmp_path: Path) -> None:
    sd = stdc1_sd
    del sd["cp.arm16.conv_atten.weight"]
    with pytest.raises(CheckpointError) as e:
        load_model(F.write(tmp_path / "cut.pth", sd))
    assert "cp.arm16.conv_atten.weight" in _one_line(e)


def test_wrong_shape(stdc1_sd, tmp_path: Path) -> None:
    sd = stdc1_sd
    sd["ffm.convblk.conv.weight"] = torch.zeros(256, 320, 1, 1)
    with pytest.raises(CheckpointError) as e:
        load_model(F.write(tmp_path / "shape.pth", sd))
    msg = _one_line(e)
    assert "ffm.convblk.conv.weight" in msg and "shape" in msg


def test_alias_that_differs_from_its_twin(stdc1_sd, tmp_path: Path) -> None:
    sd = stdc1_sd
    sd["cp.backbone.x32.0.7.conv_list.0.conv.weight"] = sd["cp.backbone.x32.0.7.conv_list.0.conv.weight"] + 1
    with pytest.raises(CheckpointError) as e:
        load_model(F.write(tmp_path / "edited.pth", sd))
    assert "differs from cp.backbone.features.7.conv_list.0.conv.weight" in _one_line(e)


def test_only_some_training_heads(stdc1_sd, tmp_path: Path) -> None:
    sd = {k: v for k, v in stdc1_sd.items() if not k.startswith("conv_out_sp2.")}
    with pytest.raises(CheckpointError) as e:
        load_model(F.write(tmp_path / "partial.pth", sd))
    assert "conv_out_sp2" in _one_line(e)


class _Trap:
    """Unpickling this would create ``marker``: proves the loader never runs pickled code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for obj in ({"x": _Trap(marker)}, {"state_dict": {"w": torch.zeros(1)}, "fn": len}):
        path = tmp_path / "evil.pth"
        torch.save(obj, path)
        with pytest.raises(CheckpointError) as e:
            load_model(path)
        msg = _one_line(e)
        assert "refused to unpickle code" in msg and "weights_only" in msg and "state_dict" in msg
    assert not marker.exists()


def test_non_torch_missing_corrupted_and_empty_files(tmp_path: Path, stdc1_file: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    cases = [(text, "not a PyTorch weights file"), (tmp_path / "nope.pth", "does not exist"),
             (tmp_path, "not a file")]
    truncated = tmp_path / "cut.pth"
    data = stdc1_file.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    cases.append((truncated, "corrupted or truncated"))
    legacy_cut = tmp_path / "legacy_cut.pth"
    torch.save({"w": torch.zeros(4)}, legacy_cut, _use_new_zipfile_serialization=False)
    legacy_cut.write_bytes(legacy_cut.read_bytes()[:20])
    cases.append((legacy_cut, "corrupted"))
    no_tensors = F.write(tmp_path / "meta_only.pth", {"epoch": 3, "lr": 0.1})
    cases.append((no_tensors, "holds no state_dict"))
    for path, expected in cases:
        with pytest.raises(CheckpointError) as e:
            load_model(path)
        assert expected in _one_line(e), (path, str(e.value))

