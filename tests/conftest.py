"""Fixtures shared across test files: small real artifacts built once per session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The automatic backend choice (--backend auto, the commands' default) caches its decision in the
# user cache directory: tests (and the commands they start) use a private one, never the user's.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="rtseg-test-cache-")

from _paths import SMALL_SIZE


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny test tensors run far faster on one thread than on two contending ones (2-core CI)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_onnx(tmp_path_factory) -> Path:
    """STDC1 with seeded random weights exported as the deploy graph at 72x96, batch 1."""
    from rtseg.export.onnx_export import export_onnx
    from rtseg.models.deploy import load_for_deploy

    loaded = load_for_deploy("stdc1", 11, None)
    path = tmp_path_factory.mktemp("onnx") / "stdc1_72x96.onnx"
    export_onnx(loaded.model, loaded.meta, input_size=SMALL_SIZE, path=path)
    return path


@pytest.fixture(scope="session")
def small_video(tmp_path_factory) -> Path:
    """A real 40-frame 160x120 mp4v clip of synthetic street scenes."""
    import cv2

    from rtseg.core.synthetic import street_frame

    path = tmp_path_factory.mktemp("video") / "street.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    assert writer.isOpened()
    for t in range(40):
        writer.write(street_frame(120, 160, t=t))
    writer.release()
    return path


@pytest.fixture(scope="session")
def int8_onnx(tmp_path_factory) -> Path:
    """A Q/DQ INT8 ONNX (tiny network, 64x96) calibrated on synthetic street frames: rtseg.precision 'int8'."""
    from precision_helpers import export, street_frames, tiny_model

    from rtseg.export.quantize import quantize_int8

    d = tmp_path_factory.mktemp("int8cli")
    src = export(tiny_model(), d / "tiny.onnx", (64, 96))
    quantize_int8(src, d / "tiny_int8.onnx", calib_frames=street_frames(4, (64, 96)))
    return d / "tiny_int8.onnx"


@pytest.fixture(scope="session")
def engine_pair(tmp_path_factory) -> Path:
    """A TensorRT engine file with a real sidecar (the plan bytes are never read without TensorRT)."""
    from precision_helpers import camvid_meta

    from rtseg.export import engine_cache as ec

    platform = ec.Platform("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")
    req = ec.BuildRequest("ab" * 32, "tiny", "fp16", SMALL_SIZE, (1, 1, 1))
    paths = ec.engine_paths(tmp_path_factory.mktemp("engine"), req, platform)
    ec.publish(paths, b"not a plan", ec.make_sidecar(req, platform, camvid_meta(), engine=paths.engine,
                                                    key=paths.key, build_seconds=0.0, trtexec="",
                                                    rebuild="rtseg-export ..."))
    return paths.engine
