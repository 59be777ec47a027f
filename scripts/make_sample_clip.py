"""Build assets/camvid_0016E5_val.mp4 from the CamVid val frames of sequence 0016E5.

Run from the repo root:  .venv/bin/python scripts/make_sample_clip.py [CAMVID_DIR]
(CAMVID_DIR defaults to ../shared/datasets/camvid). The frames are played at
10 fps, which gives a ~10 s clip; mp4v because OpenCV's wheel cannot encode H.264.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2

from rtseg.core.atomic import atomic_path

FPS = 10.0


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/camvid")
    frames = sorted((root / "val" / "images").glob("0016E5_*.jpg"))
    if not frames:
        print(f"error: no CamVid val frames of sequence 0016E5 under {root}", file=sys.stderr)
        return 2
    first = cv2.imread(str(frames[0]))
    h, w = first.shape[:2]
    out = Path("assets/camvid_0016E5_val.mp4")
    with atomic_path(out) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (w, h))
        if not writer.isOpened():
            print("error: OpenCV could not open an mp4v writer", file=sys.stderr)
            return 2
        for p in frames:
            img = cv2.imread(str(p))
            writer.write(img)
        writer.release()
    print(f"wrote {out}: {len(frames)} frames {w}x{h} at {FPS} fps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
