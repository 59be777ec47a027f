"""Dataset layouts (CamVid, Cityscapes, folder), loading, and augmentation, on real files in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from rtseg.core.errors import UserInputError
from rtseg.data.augment import AugmentConfig, TrainAugment, normalize_bgr, pad_to
from rtseg.data.datasets import DEFAULT_CAMVID_ROOT, detect_kind, open_dataset, require_nonempty
from rtseg.data.synth import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]


def test_camvid_layout_pairs_and_loads(tmp_path):
    root = write_synthetic_dataset(tmp_path / "cv", splits={"train": 3, "val": 2}, num_classes=11,
                                   ignore_index=11, layout="camvid", image_ext=".jpg")
    ds = open_dataset(root, "train")
    assert ds.info.name == "camvid" and ds.info.num_classes == 11 and ds.info.ignore_index == 11
    assert len(ds) == 3 and not ds.orphan_images and not ds.orphan_labels
    img, lab = ds.load(0)
    assert img.dtype == np.uint8 and img.shape == (64, 80, 3)
    assert lab.dtype == np.uint8 and lab.shape == (64, 80)
    assert set(np.unique(lab)) <= set(range(12))
    assert len(open_dataset(root, "val")) == 2


def test_folder_layout_json_description(tmp_path):
    root = write_synthetic_dataset(tmp_path / "f", num_classes=4, ignore_index=255)
    assert detect_kind(root) == "folder"
    ds = open_dataset(root, "val")
    assert ds.info.class_names == ("class 0", "class 1", "class 2", "class 3")
    assert ds.info.ignore_index == 255 and len(ds.info.palette) == 4
    _, lab = ds.load(0)
    assert set(np.unique(lab)) <= {0, 1, 2, 3, 255}


def test_folder_layout_without_splits(tmp_path):
    root = tmp_path / "flat"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(root / "labels" / "a.png"), np.ones((8, 8), np.uint8))
    (root / "dataset.json").write_text(json.dumps({"classes": ["bg", "fg"], "ignore_index": 9}))
    ds = open_dataset(root, "all")
    assert len(ds) == 1 and ds.info.ignore_index == 9
    with pytest.raises(UserInputError, match="--split all"):
        open_dataset(root, "train")


def test_folder_layout_yaml_description(tmp_path):
    yaml = pytest.importorskip("yaml")
    root = write_synthetic_dataset(tmp_path / "y", num_classes=3)
    (root / "dataset.json").unlink()
    (root / "dataset.yaml").write_text(yaml.safe_dump({"classes": ["a", "b", "c"], "ignore_index": 200,
                                                       "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}))
    ds = open_dataset(root, "train")
    assert ds.info.class_names == ("a", "b", "c") and ds.info.palette[1] == (4, 5, 6)
    assert ds.info.ignore_index == 200


@pytest.mark.parametrize("desc, match", [
    ({"classes": ["only"]}, "at least 2"),
    ({"classes": ["a", "b"], "ignore_index": 1}, "ignore_index"),
    ({"classes": ["a", "b"], "palette": [[1, 2, 3]]}, "palette"),
])
def test_folder_description_errors(tmp_path, desc, match):
    root = write_synthetic_dataset(tmp_path / "bad", num_classes=2)
    (root / "dataset.json").write_text(json.dumps(desc))
    with pytest.raises(UserInputError, match=match):
        open_dataset(root, "train")


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    root = tmp_path / "cs"
    img_dir = root / "leftImg8bit" / "val" / "aachen"
    lab_dir = root / "gtFine" / "val" / "aachen"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    raw = np.array([[7, 8, 11, 26], [33, 0, 3, 255]], np.uint8).repeat(4, 0).repeat(4, 1)
    cv2.imwrite(str(img_dir / "aachen_000000_000019_leftImg8bit.png"), np.zeros((8, 16, 3), np.uint8))
    cv2.imwrite(str(lab_dir / "aachen_000000_000019_gtFine_labelIds.png"), raw)
    cv2.imwrite(str(lab_dir / "aachen_000000_000019_gtFine_color.png"), np.zeros((8, 16, 3), np.uint8))
    assert detect_kind(root) == "cityscapes"
    ds = open_dataset(root, "val")
    assert len(ds) == 1 and ds.info.num_classes == 19
    lab = ds.load_label(0)
    # road, sidewalk, building, car / bicycle, unlabelled, out of roi, license plate(-1 stored 255)
    assert lab[0, ::4].tolist() == [0, 1, 2, 13]
    assert lab[4, ::4].tolist() == [18, 255, 255, 255]


def test_missing_dataset_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserInputError, match="--data") as e:
        open_dataset(tmp_path / "nope", "train")
    assert "\n" not in str(e.value)
    (tmp_path / "empty" / "train" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "train" / "labels").mkdir(parents=True)
    with pytest.raises(UserInputError, match="no image/label pairs"):
        require_nonempty(open_dataset(tmp_path / "empty", "train", "camvid"))


def test_size_mismatch_refused_on_load(tmp_path):
    root = write_synthetic_dataset(tmp_path / "m", splits={"train": 1})
    lab_path = root / "train" / "labels" / "s0000.png"
    cv2.imwrite(str(lab_path), np.zeros((10, 10), np.uint8))
    with pytest.raises(UserInputError, match="size|is 80x64"):
        open_dataset(root, "train").load(0)


def test_augment_crop_shape_padding_and_determinism():
    rng_img = np.random.default_rng(0)
    img = rng_img.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    lab = rng_img.integers(0, 4, (40, 50), dtype=np.uint8)
    aug = TrainAugment(AugmentConfig(crop=(64, 72), scale=(0.5, 1.0), ignore_index=255))
    a_img, a_lab = aug(img, lab, np.random.default_rng([1, 2, 3]))
    b_img, b_lab = aug(img, lab, np.random.default_rng([1, 2, 3]))
    assert a_img.shape == (64, 72, 3) and a_lab.shape == (64, 72)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    # The scaled image is smaller than the crop: the rest is ignore, and labels stay ids.
    assert (a_lab == 255).sum() > 0
    assert set(np.unique(a_lab)) <= {0, 1, 2, 3, 255}


def test_pad_uses_ignore_for_labels_and_mean_for_pixels():
    img, lab = pad_to(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8), (3, 4), (10, 20, 30), 99)
    assert lab.shape == (3, 4) and lab[2, 3] == 99 and lab[0, 0] == 0
    assert img[2, 3].tolist() == [10, 20, 30]


def test_normalize_matches_deploy_graph():
    torch = pytest.importorskip("torch")
    from rtseg.core.meta import ModelMeta
    from rtseg.models import create_model
    from rtseg.models.deploy import DeployGraph

    meta = ModelMeta("stdc1", ("a", "b"), ((0, 0, 0), (1, 1, 1)), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    graph = DeployGraph(create_model("stdc1", 2), meta)
    frame = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    ours = normalize_bgr(frame, meta.mean, meta.std)
    theirs = graph.normalize(torch.from_numpy(frame[None])).numpy()[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_real_camvid_if_present():
    root = (REPO / DEFAULT_CAMVID_ROOT).resolve()
    if not root.is_dir():
        pytest.skip(f"CamVid not found at {root}")
    ds = open_dataset(root, "val")
    assert len(ds) == 101 and ds.info.num_classes == 11
    img, lab = ds.load(0)
    assert img.shape == (360, 480, 3) and lab.shape == (360, 480)


def _camvid_with_sequences(root: Path) -> Path:
    """A CamVid-layout folder whose file names carry sequence prefixes, as the real one's do."""
    write_synthetic_dataset(root, splits={"train": 6, "val": 3}, num_classes=11, ignore_index=11,
                            layout="camvid", image_ext=".jpg")
    names = {"train": ["0001TP_000030", "0001TP_000060", "0006R0_000030", "0006R0_000060", "0016E5_000030",
                       "0016E5_000060"],
             "val": ["0016E5_000090", "0016E5_000120", "0016E5_000150"]}
    for split, stems in names.items():
        for sub, ext in (("images", ".jpg"), ("labels", ".png")):
            files = sorted((root / split / sub).iterdir())
            for f, stem in zip(files, stems, strict=True):
                f.rename(f.with_name(stem + ext))
    return root


def test_sequence_splits_select_exactly_the_named_sequences(tmp_path):
    root = _camvid_with_sequences(tmp_path / "cv")
    stems = lambda ds: sorted(p[0].stem for p in ds.pairs)  # noqa: E731
    held_train = open_dataset(root, "heldout-train")
    held_val = open_dataset(root, "heldout-val")
    assert stems(held_train) == ["0001TP_000030", "0001TP_000060", "0016E5_000030", "0016E5_000060",
                                 "0016E5_000090", "0016E5_000120", "0016E5_000150"]
    assert stems(held_val) == ["0006R0_000030", "0006R0_000060"]
    assert not set(stems(held_train)) & set(stems(held_val))
    assert held_train.split == "heldout-train"
    assert len(open_dataset(root, "trainval")) == 9
    assert stems(open_dataset(root, "train@0001TP,0006R0")) == stems(open_dataset(root, "train"))[:4]
    img, lab = held_val.load(1)
    assert img.shape[:2] == lab.shape


@pytest.mark.parametrize(("spec", "match"), [("train@XXXX", "selects no frames"), ("train+", "bad split"),
                                             ("@0001TP", "bad split"), ("train@", "bad split")])
def test_bad_split_specs_are_one_line_errors(tmp_path, spec, match):
    root = _camvid_with_sequences(tmp_path / "cv")
    with pytest.raises(UserInputError, match=match) as err:
        open_dataset(root, spec)
    assert "\n" not in str(err.value)


def test_real_camvid_heldout_protocol_if_present():
    root = (REPO / DEFAULT_CAMVID_ROOT).resolve()
    if not root.is_dir():
        pytest.skip(f"CamVid not found at {root}")
    train, val = open_dataset(root, "heldout-train"), open_dataset(root, "heldout-val")
    assert (len(train), len(val)) == (367, 101)
    assert {p[0].stem[:6] for p in train.pairs} == {"0001TP", "0016E5"}
    assert {p[0].stem[:6] for p in val.pairs} == {"0006R0"}
