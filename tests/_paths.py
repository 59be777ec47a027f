"""Paths and sizes the tests share (importable as ``_paths`` under pytest's prepend import mode)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CLIP = REPO / "assets" / "camvid_0016E5_val.mp4"
#: CamVid as CI sees it: ``shared/`` beside the repo checkout.
CAMVID = REPO.parent / "shared" / "datasets" / "camvid"
#: Small, non-multiple-of-32 input: exercises odd feature-map sizes and keeps tests fast.
SMALL_SIZE = (72, 96)
