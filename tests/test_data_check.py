"""rtseg-data-check catches each bad case, on real files written to tmp_path."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from rtseg.cli.train import check_main
from rtseg.data.check import check_dataset, class_frequencies
from rtseg.data.datasets import open_dataset
from rtseg.data.synth import write_synthetic_dataset


@pytest.fixture()
def good(tmp_path):
    return write_synthetic_dataset(tmp_path / "ds", splits={"train": 4}, num_classes=4, ignore_index=255)


def _report(root):
    return check_dataset(open_dataset(root, "train"))


def test_clean_dataset_passes_with_shares(good):
    rep = _report(good)
    assert rep.ok and rep.pairs == 4 and rep.sizes == {"80x64": 4}
    shares = rep.shares()
    assert len(shares) == 5 and abs(sum(shares) - 1) < 1e-9
    assert sum(rep.class_pixels) == 4 * 64 * 80
    # Every synthetic image has an ignored band: the last share is positive.
    assert shares[-1] > 0
    assert "OK" in rep.format_text()


def test_out_of_range_label_values(good):
    lab_path = good / "train" / "labels" / "s0001.png"
    lab = cv2.imread(str(lab_path), cv2.IMREAD_UNCHANGED)
    lab[0, 0], lab[0, 1] = 7, 42
    cv2.imwrite(str(lab_path), lab)
    rep = _report(good)
    assert not rep.ok and rep.bad_values == ["s0001: values [7, 42]"]


def test_size_mismatch(good):
    cv2.imwrite(str(good / "train" / "labels" / "s0002.png"), np.zeros((32, 40), np.uint8))
    rep = _report(good)
    assert rep.size_mismatch == ["s0002: image 80x64, label 40x32"]


def test_missing_pairs_both_ways(good):
    (good / "train" / "labels" / "s0000.png").unlink()
    cv2.imwrite(str(good / "train" / "labels" / "stray.png"), np.zeros((64, 80), np.uint8))
    rep = _report(good)
    assert rep.orphan_images == ["s0000.png"] and rep.orphan_labels == ["stray.png"]
    assert rep.pairs == 3 and rep.problems == 2


def test_colour_label_and_unreadable_file(good):
    cv2.imwrite(str(good / "train" / "labels" / "s0001.png"), np.zeros((64, 80, 3), np.uint8))
    (good / "train" / "images" / "s0003.png").write_bytes(b"not an image")
    rep = _report(good)
    assert len(rep.unreadable) == 2
    assert any("s0001.png" in u and "single-channel" in u for u in rep.unreadable)
    assert any("s0003.png" in u for u in rep.unreadable)


def test_cli_exit_codes_and_json(good, tmp_path, capsys):
    out = tmp_path / "rep.json"
    assert check_main(["--data", str(good), "--split", "train", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data[0]["ok"] is True and data[0]["pairs"] == 4
    cv2.imwrite(str(good / "train" / "labels" / "s0002.png"), np.full((64, 80), 9, np.uint8))
    assert check_main(["--data", str(good), "--split", "train"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "problem" in err[0]


def test_class_frequencies_count_pixels_and_the_images_each_class_is_in(good):
    # Hand-made labels (same size as the images): what median frequency balancing needs.
    labels = sorted((good / "train" / "labels").glob("*.png"))
    lab = np.zeros((64, 80), np.uint8)
    lab[:, :40] = 1
    lab[0, :10] = 255  # ignored: counted nowhere
    cv2.imwrite(str(labels[0]), lab)  # classes 0 and 1
    for p in labels[1:]:
        cv2.imwrite(str(p), np.full((64, 80), 2, np.uint8))  # class 2 only
    ds = open_dataset(good, "train")
    class_px, image_px = class_frequencies(ds)
    labelled0 = 64 * 80 - 10
    assert class_px == [64 * 40, 64 * 40 - 10, 3 * 64 * 80, 0]
    assert image_px == [labelled0, labelled0, 3 * 64 * 80, 0]
    # limit reads the first N pairs only, as training with --limit-train does.
    assert class_frequencies(ds, limit=1) == ([64 * 40, 64 * 40 - 10, 0, 0], [labelled0, labelled0, 0, 0])
