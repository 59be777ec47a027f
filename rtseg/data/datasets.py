"""Segmentation datasets on disk: CamVid layout, Cityscapes layout, generic folder.

Every dataset yields ``(bgr, label)`` pairs: ``bgr`` uint8 ``[H, W, 3]`` exactly as
OpenCV decodes it (the same channel order the deploy graph takes), ``label``
uint8 ``[H, W]`` of train ids in ``[0, num_classes)`` or ``ignore_index``.
Normalisation happens later, once, in the same way the deploy graph does it.

Layouts:

- ``camvid``: ``<root>/<split>/images/*.jpg|png`` and ``<root>/<split>/labels/*.png``
  paired by file stem; 11 classes, label 11 ignored.
- ``cityscapes``: ``<root>/leftImg8bit/<split>/<city>/<x>_leftImg8bit.png`` and
  ``<root>/gtFine/<split>/<city>/<x>_gtFine_labelIds.png``; label ids are mapped
  to the 19 train ids, everything else to 255 (ignored).
- ``folder``: a ``dataset.json`` (or ``dataset.yaml``) at ``<root>`` with
  ``classes`` (names), optional ``palette`` (RGB triples), ``ignore_index``
  (default 255), and images/labels either in ``<root>/<split>/{images,labels}``
  or, without splits, in ``<root>/{images,labels}``.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rtseg.core.datasets_meta import (
    CAMVID_CLASSES,
    CAMVID_IGNORE_INDEX,
    CAMVID_PALETTE,
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    generic_classes,
)
from rtseg.core.errors import UserInputError
from rtseg.core.frames import IMAGE_EXTENSIONS

RGB = tuple[int, int, int]

#: Default CamVid location, relative to the repository root (the CI layout).
DEFAULT_CAMVID_ROOT = "../shared/datasets/camvid"

DATASET_KINDS = ("auto", "camvid", "cityscapes", "folder")

# Cityscapes labelIds -> trainIds (cityscapesScripts' labels table: 19 evaluated
# classes; void and rarely-present classes such as caravan/trailer are ignored).
_CITYSCAPES_ID_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
#: Highest labelId defined by Cityscapes (license plate is stored as -1 -> 255 by some tools).
_CITYSCAPES_MAX_ID = 33


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset's labels mean."""

    name: str
    class_names: tuple[str, ...]
    palette: tuple[RGB, ...]
    ignore_index: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class SegDataset:
    """An ordered list of (image, label) file pairs plus how to read them.

    ``raw_lut`` maps raw label file values to train ids (identity for CamVid and
    folders, labelIds -> trainIds for Cityscapes); ``raw_valid`` says which raw
    values are legitimate, so the checker can report anything else.
    ``orphan_images`` / ``orphan_labels`` are files without a partner: they are
    never loaded, only reported.
    """

    info: DatasetInfo
    root: Path
    split: str | None
    pairs: list[tuple[Path, Path]]
    raw_lut: np.ndarray  # uint8 [256]
    raw_valid: np.ndarray  # bool [256]
    orphan_images: list[Path] = field(default_factory=list)
    orphan_labels: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)

    def name_of(self, i: int) -> str:
        return self.pairs[i][0].stem

    def load_image(self, i: int) -> np.ndarray:
        """uint8 BGR ``[H, W, 3]`` of sample ``i``."""
        path = self.pairs[i][0]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise UserInputError(f"cannot read image {path}; check the file (rtseg-data-check lists bad files)")
        return img

    def load_raw_label(self, i: int) -> np.ndarray:
        """The label file as stored (before the id mapping)."""
        path = self.pairs[i][1]
        lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if lab is None:
            raise UserInputError(f"cannot read label {path}; check the file (rtseg-data-check lists bad files)")
        if lab.ndim != 2 or lab.dtype != np.uint8:
            raise UserInputError(
                f"label {path} is {lab.dtype} with shape {lab.shape}; labels must be 8-bit single-channel "
                f"PNGs of class ids (convert colour labels to ids first)"
            )
        return lab

    def load_label(self, i: int) -> np.ndarray:
        """uint8 ``[H, W]`` train ids (ignore_index where unlabelled)."""
        return self.raw_lut[self.load_raw_label(i)]

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(bgr, label)`` of sample ``i``; refuses an image/label size mismatch."""
        img, lab = self.load_image(i), self.load_label(i)
        if img.shape[:2] != lab.shape:
            raise UserInputError(
                f"{self.pairs[i][0].name}: image is {img.shape[1]}x{img.shape[0]} but its label is "
                f"{lab.shape[1]}x{lab.shape[0]}; fix or remove the pair (rtseg-data-check lists them)"
            )
        return img, lab


def _identity_lut(num_classes: int, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    lut = np.arange(256, dtype=np.uint8)
    valid = np.zeros(256, dtype=bool)
    valid[:num_classes] = True
    valid[ignore_index] = True
    # Values outside the class range are mapped to ignore so a stray value can
    # never index past the classifier; the checker still reports them.
    lut[~valid] = ignore_index
    return lut, valid


def _pair_by_stem(images: list[Path], labels: list[Path], label_stem=lambda p: p.stem,
                  image_stem=lambda p: p.stem) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    by_key = {label_stem(p): p for p in labels}
    pairs, orphan_images = [], []
    used = set()
    for img in sorted(images):
        key = image_stem(img)
        if key in by_key:
            pairs.append((img, by_key[key]))
            used.add(key)
        else:
            orphan_images.append(img)
    orphan_labels = sorted(p for k, p in by_key.items() if k not in used)
    return pairs, orphan_images, orphan_labels


def _files(folder: Path, suffixes: Collection[str]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def _need_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise UserInputError(f"{what} folder {path} not found; pass the dataset root with --data "
                             f"(expected layout is described in `rtseg-data-check --help`)")


def _split_dirs(root: Path, split: str | None) -> tuple[Path, Path]:
    base = root / split if split else root
    if split and not base.is_dir() and (root / "images").is_dir():
        raise UserInputError(f"{root} has no '{split}' split folder; it holds one unsplit set: use --split all")
    return base / "images", base / "labels"


def load_camvid(root: str | Path, split: str = "train") -> SegDataset:
    """CamVid (11 classes, label 11 ignored) in ``<root>/<split>/{images,labels}``."""
    root = Path(root)
    _need_dir(root, "CamVid dataset")
    img_dir, lab_dir = _split_dirs(root, None if split == "all" else split)
    _need_dir(img_dir, f"CamVid {split} images")
    _need_dir(lab_dir, f"CamVid {split} labels")
    info = DatasetInfo("camvid", CAMVID_CLASSES, CAMVID_PALETTE, CAMVID_IGNORE_INDEX)
    pairs, oi, ol = _pair_by_stem(_files(img_dir, IMAGE_EXTENSIONS), _files(lab_dir, (".png",)))
    lut, valid = _identity_lut(info.num_classes, info.ignore_index)
    return SegDataset(info, root, split, pairs, lut, valid, oi, ol)


def load_cityscapes(root: str | Path, split: str = "train") -> SegDataset:
    """Cityscapes fine annotations; labelIds are mapped to the 19 trainIds (255 = ignore)."""
    root = Path(root)
    img_root, lab_root = root / "leftImg8bit" / split, root / "gtFine" / split
    _need_dir(img_root, f"Cityscapes leftImg8bit/{split}")
    _need_dir(lab_root, f"Cityscapes gtFine/{split}")
    images = sorted(img_root.glob("*/*_leftImg8bit.png"))
    labels = sorted(lab_root.glob("*/*_gtFine_labelIds.png"))
    pairs, oi, ol = _pair_by_stem(
        images, labels,
        image_stem=lambda p: p.name[: -len("_leftImg8bit.png")],
        label_stem=lambda p: p.name[: -len("_gtFine_labelIds.png")],
    )
    info = DatasetInfo("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, 255)
    lut = np.full(256, 255, dtype=np.uint8)
    for raw, train in _CITYSCAPES_ID_TO_TRAIN.items():
        lut[raw] = train
    valid = np.zeros(256, dtype=bool)
    valid[: _CITYSCAPES_MAX_ID + 1] = True
    valid[255] = True
    return SegDataset(info, root, split, pairs, lut, valid, oi, ol)


def _read_description(root: Path) -> dict:
    for name in ("dataset.json", "dataset.yaml", "dataset.yml"):
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            try:
                desc = json.loads(text)
            except json.JSONDecodeError as e:
                raise UserInputError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); fix it") from None
        else:
            try:
                import yaml  # optional: the `train` extra installs PyYAML
            except ImportError:
                raise UserInputError(
                    f"{path} needs PyYAML: pip install pyyaml (or write the same keys as dataset.json)"
                ) from None
            try:
                desc = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise UserInputError(f"{path} is not valid YAML ({e}); fix it".replace("\n", " ")) from None
        if not isinstance(desc, dict):
            raise UserInputError(f"{path} must hold a mapping with at least 'classes'")
        return desc
    raise UserInputError(f"{root} has no dataset.json or dataset.yaml describing its classes; write one with "
                         f'{{"classes": [...], "palette": [[r,g,b], ...], "ignore_index": 255}}')


def load_folder(root: str | Path, split: str | None = None) -> SegDataset:
    """A generic folder of images + 8-bit label PNGs described by ``dataset.json``/``.yaml``."""
    root = Path(root)
    _need_dir(root, "dataset")
    desc = _read_description(root)
    classes = desc.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise UserInputError(f"{root}/dataset description: 'classes' must be a list of at least 2 names")
    ignore = desc.get("ignore_index", 255)
    if not isinstance(ignore, int) or not 0 <= ignore <= 255 or ignore < len(classes):
        raise UserInputError(f"{root}/dataset description: 'ignore_index' must be an integer in "
                             f"[{len(classes)}, 255] (not a class id), got {ignore!r}")
    palette = desc.get("palette")
    if palette is None:
        palette = generic_classes(len(classes))[1]
    elif (not isinstance(palette, list) or len(palette) != len(classes)
          or not all(isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                     for c in palette)):
        raise UserInputError(f"{root}/dataset description: 'palette' must list one [r, g, b] (0-255) per class")
    info = DatasetInfo(str(desc.get("name", root.name)), tuple(classes),
                       tuple(tuple(c) for c in palette), ignore)  # type: ignore[misc]
    use_split = None if split in (None, "all") else split
    img_dir, lab_dir = _split_dirs(root, use_split)
    _need_dir(img_dir, "images")
    _need_dir(lab_dir, "labels")
    pairs, oi, ol = _pair_by_stem(_files(img_dir, IMAGE_EXTENSIONS), _files(lab_dir, (".png",)))
    lut, valid = _identity_lut(info.num_classes, info.ignore_index)
    return SegDataset(info, root, split, pairs, lut, valid, oi, ol)


def detect_kind(root: str | Path) -> str:
    """Guess the layout of ``root``: folder (has a description), cityscapes, or camvid."""
    root = Path(root)
    if any((root / n).is_file() for n in ("dataset.json", "dataset.yaml", "dataset.yml")):
        return "folder"
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    return "camvid"


#: Named CamVid splits of the held-out-sequence protocol. CamVid's ``val`` frames are
#: sequence 0016E5, whose other frames are in ``train``, so a score on ``val`` is not a
#: score on unseen footage. The protocol trains on the train and val frames of 0001TP and
#: 0016E5 and validates on 0006R0 (a sequence of ``train`` only), which it never trains on.
CAMVID_NAMED_SPLITS = {
    "trainval": "train+val",
    "heldout-train": "train+val@0001TP,0016E5",
    "heldout-val": "train+val@0006R0",
}


def parse_split(spec: str) -> tuple[list[str], list[str] | None]:
    """``SPLIT[+SPLIT...][@SEQ,SEQ...]`` -> (split folders, sequence prefixes or None).

    ``train+val`` joins folders; ``@0006R0`` keeps the frames whose file name starts with
    one of the sequence prefixes (CamVid names frames ``<sequence>_<frame>``).
    """
    text = spec.strip()
    folders_part, _, seq_part = text.partition("@")
    folders = folders_part.split("+")
    seqs = seq_part.split(",") if seq_part else None
    if (not all(folders) or (seqs is not None and not all(seqs)) or (text.endswith("@"))
            or any(not f.replace("-", "").replace("_", "").isalnum() for f in folders)):
        raise UserInputError(f"bad split {spec!r}: write SPLIT, SPLIT+SPLIT, or SPLIT+SPLIT@SEQ,SEQ "
                             f"(e.g. train+val@0001TP,0016E5)")
    return folders, seqs


def open_dataset(root: str | Path, split: str = "train", kind: str = "auto") -> SegDataset:
    """Open a dataset split; ``kind`` is one of ``DATASET_KINDS`` (``auto`` detects it).

    ``split`` is a folder name (``train``), several joined with ``+`` (``train+val``),
    optionally restricted to sequences by file-name prefix (``train+val@0006R0``), or,
    for CamVid, a name of ``CAMVID_NAMED_SPLITS`` (``heldout-train`` / ``heldout-val``).
    """
    root = Path(root)
    if not root.exists():
        raise UserInputError(f"dataset folder {root} does not exist; pass the right path with --data")
    if kind == "auto":
        kind = detect_kind(root)
    if kind not in ("camvid", "cityscapes", "folder"):
        raise UserInputError(f"unknown dataset kind {kind!r}; choose one of: {', '.join(DATASET_KINDS)}")
    named = split
    if kind == "camvid":
        split = CAMVID_NAMED_SPLITS.get(split, split)
    folders, seqs = parse_split(split)
    parts = []
    for folder in folders:
        if kind == "camvid":
            parts.append(load_camvid(root, folder))
        elif kind == "cityscapes":
            parts.append(load_cityscapes(root, folder))
        else:
            parts.append(load_folder(root, folder))
    ds = parts[0]
    if len(parts) > 1 or seqs is not None:
        pairs = [pair for part in parts for pair in part.pairs]
        if seqs is not None:
            pairs = [pair for pair in pairs if pair[0].stem.startswith(tuple(seqs))]
            if not pairs:
                raise UserInputError(f"split {named!r} selects no frames: no file name in "
                                     f"{'+'.join(folders)} starts with {' or '.join(seqs)}")
        ds = SegDataset(ds.info, ds.root, named, pairs, ds.raw_lut, ds.raw_valid,
                        [p for part in parts for p in part.orphan_images],
                        [p for part in parts for p in part.orphan_labels])
    else:
        ds.split = named
    return ds


def require_nonempty(ds: SegDataset) -> SegDataset:
    """Refuse a split with no image/label pairs (a wrong path, usually)."""
    if not ds.pairs:
        raise UserInputError(f"no image/label pairs found in {ds.root} (split {ds.split}); "
                             f"check --data/--split, and run rtseg-data-check on it")
    return ds
