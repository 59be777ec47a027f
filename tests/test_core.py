"""rtseg.core: the Precision type, artifact metadata from a newer rtseg, atomic writes and the umask."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from rtseg.core.atomic import atomic_path, atomic_write_text
from rtseg.core.errors import ArtifactError, RtsegError, UserInputError
from rtseg.core.frames import resize_to_model
from rtseg.core.meta import ModelMeta
from rtseg.core.precision import Precision

META = ModelMeta(model="m", class_names=("a", "b"), palette=((0, 0, 0), (255, 255, 255)),
                 mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


# -- Precision --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("f32", Precision.F32), ("FP32", Precision.F32), ("float32", Precision.F32),
    ("bf16", Precision.BF16), ("bfloat16", Precision.BF16),
    ("f16", Precision.FP16), ("fp16", Precision.FP16), ("half", Precision.FP16), ("fp16-mixed", Precision.FP16),
    ("int8", Precision.INT8), ("int8-qdq", Precision.INT8), (" Int8 ", Precision.INT8),
])
def test_every_spelling_parses_in_one_place(text: str, want: Precision) -> None:
    assert Precision.parse(text) is want
    assert Precision.parse(want) is want


def test_precision_prints_and_serialises_by_its_canonical_name() -> None:
    assert [str(p) for p in Precision] == ["f32", "bf16", "fp16", "int8"]
    assert f"{Precision.INT8}" == "int8" and Precision.FP16 == "fp16"
    assert json.loads(json.dumps({"p": Precision.BF16})) == {"p": "bf16"}
    assert Precision.parse_optional(None) is None and Precision.parse_optional("") is None
    assert not Precision.F32.reduced and Precision.INT8.reduced
    with pytest.raises(UserInputError, match="unknown precision 'int4'; choose one of f32, bf16, fp16, int8"):
        Precision.parse("int4")


# -- metadata written by a newer rtseg -------------------------------------------------------

def test_metadata_from_a_newer_rtseg_is_a_one_line_error() -> None:
    d = META.to_dict()
    assert ModelMeta.from_dict(d) == META
    with pytest.raises(ArtifactError, match="newer rtseg; upgrade rtseg") as e:
        ModelMeta.from_dict({**d, "layout": "NCHW", "quant": {"scheme": "x"}})
    assert isinstance(e.value, RtsegError) and "\n" not in str(e.value) and "layout, quant" in str(e.value)
    broken = dict(d)
    del broken["palette"]
    with pytest.raises(ArtifactError, match="damaged \\(missing field 'palette'\\)"):
        ModelMeta.from_dict(broken)
    with pytest.raises(ArtifactError, match="damaged"):
        ModelMeta.from_dict({**d, "palette": [[0, 0, 0]]})  # classes and palette disagree
    with pytest.raises(ArtifactError, match="not valid JSON"):
        ModelMeta.from_json("{nope")


def test_a_newer_onnx_artifact_fails_the_command_in_one_line(small_onnx: Path, tmp_path: Path, capsys) -> None:
    """An ONNX whose rtseg.meta has a field this version does not know: rtseg-run says so and exits 2."""
    import onnx

    from rtseg.cli import run

    m = onnx.load(str(small_onnx))
    for p in m.metadata_props:
        if p.key == "rtseg.meta":
            p.value = json.dumps({**json.loads(p.value), "future_field": 1})
    newer = tmp_path / "newer.onnx"
    onnx.save(m, str(newer))
    rc = run.main(["synthetic:64x64", "--onnx", str(newer), "--max-frames", "1", "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "future_field" in err[0] and "newer rtseg" in err[0]
    assert not (tmp_path / "o.mp4").exists()


# -- atomic writes and the umask --------------------------------------------------------------

def test_atomic_write_gives_normal_permissions_and_leaves_nothing_on_error(tmp_path: Path) -> None:
    umask = os.umask(0o022)  # the test owns the process umask only around this call
    os.umask(umask)
    target = tmp_path / "out.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "never.onnx") as tmp:
        assert tmp.suffix == ".onnx" and tmp.parent == tmp_path
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_write_never_touches_the_process_umask(tmp_path: Path) -> None:
    """Changing the umask, even for an instant, lets a file another thread creates meanwhile come
    out world-writable. A subprocess traces every os.umask call made while atomic writes run."""
    code = f"""
import os, threading
calls = []
real = os.umask
os.umask = lambda mask: calls.append(mask) or real(mask)
real(0o022)
from rtseg.core.atomic import atomic_write_text
made = []
def other_thread():  # creates files while the main thread writes atomically
    for i in range(200):
        p = os.path.join({str(tmp_path)!r}, f"other{{i}}")
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o666)
        os.close(fd)
        made.append(os.stat(p).st_mode & 0o777)
t = threading.Thread(target=other_thread)
t.start()
for i in range(200):
    atomic_write_text(os.path.join({str(tmp_path)!r}, f"atomic{{i}}.txt"), "x")
t.join()
assert calls == [], calls
assert set(made) == {{0o644}}, set(made)
assert {{os.stat(os.path.join({str(tmp_path)!r}, f"atomic{{i}}.txt")).st_mode & 0o777 for i in range(200)}} == {{0o644}}
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def test_atomic_writes_from_many_threads_get_distinct_temporaries(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for k in range(20):
                atomic_write_text(tmp_path / f"t{i}.txt", f"{i}-{k}")
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"t{i}.txt" for i in range(4)]
    assert (tmp_path / "t3.txt").read_text() == "3-19"


# -- the one resize --------------------------------------------------------------------------

def test_resize_to_model_is_opencv_linear_and_writes_in_place() -> None:
    import cv2

    img = (np.arange(40 * 60 * 3) % 251).astype(np.uint8).reshape(40, 60, 3)
    want = cv2.resize(img, (30, 20), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(resize_to_model(img, (20, 30)), want)
    out = np.empty((20, 30, 3), np.uint8)
    assert resize_to_model(img, (20, 30), out=out) is out and np.array_equal(out, want)
    assert resize_to_model(img, (40, 60)) is img  # already at size: no copy


def test_which_cpus_saturate_8_bit_int8_weights() -> None:
    """x86 with AVX2 but no VNNI saturates (VPMADDUBSW's int16 pair sums); any VNNI flavour, a CPU that is
    not x86, or unknown flags do not; the report names the flags that decide it."""
    from rtseg.core.cpu import has_bf16, int8_saturates, reported_flags

    zen3 = frozenset({"sse4_2", "avx", "avx2", "fma"})
    assert int8_saturates(zen3)
    assert int8_saturates(zen3 | {"avx512f", "avx512bw"})  # Skylake-SP: AVX-512 without VNNI
    for vnni in ("avx512_vnni", "avx_vnni", "amx_int8"):
        assert not int8_saturates(zen3 | {vnni})
    assert not int8_saturates(frozenset({"asimd", "asimddp"}))  # ARM: int32 dot products
    assert not int8_saturates(frozenset())  # nothing known: no claim
    assert not has_bf16(zen3) and has_bf16(zen3 | {"avx512_bf16"}) and has_bf16(frozenset({"amx_bf16"}))
    assert reported_flags(zen3 | {"avx512_vnni", "avx512f"}) == "avx2 avx512f avx512_vnni"
