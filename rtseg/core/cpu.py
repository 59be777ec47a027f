"""What this CPU computes natively: read once from ``/proc/cpuinfo`` for every layer that asks.

Two facts decide which reduced precisions are worth running and which are correct:

- bf16 is only faster with AVX512-BF16 or AMX-BF16; elsewhere OpenVINO emulates it (``has_bf16``);
- INT8 convolutions on x86 CPUs without VNNI (AVX2, or AVX-512 before Cascade Lake / Zen 4) multiply
  uint8 activations by int8 weights with ``VPMADDUBSW``, which adds each pair of products into a
  *saturating* int16: two products of 255 x 127 overflow it. ONNX Runtime's and OpenVINO's INT8 kernels
  then give other labels than the same Q/DQ graph computed exactly (measured on a 2-core AMD EPYC
  without VNNI: 92.1% vs 98.8% label agreement with FP32 on a test model; the shipped default's 8-bit
  NNCF artifact 99.28%, under the 99.5% the automatic choice requires). Weights quantized to 7 bits
  (ONNX Runtime's ``reduce_range``, NNCF's overflow fix) keep every pair sum inside int16, so such an
  artifact gives the same labels on every CPU (``int8_saturates``).
"""

from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

#: Flags that give an exact int32 INT8 dot product (no int16 intermediate).
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
#: Flags that give native bf16 arithmetic.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: The flags reports name, in this order, where the CPU has them.
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_description() -> tuple[str, frozenset[str]]:
    """(CPU model name, CPU flags) from /proc/cpuinfo; (platform's processor, no flags) elsewhere."""
    name, flags = platform.processor() or platform.machine(), frozenset[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return name, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            name = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return name, flags


def reported_flags(flags: frozenset[str]) -> str:
    """The flags that matter for inference speed and INT8 correctness, space-separated."""
    return " ".join(f for f in REPORTED_FLAGS if f in flags)


def has_bf16(flags: frozenset[str]) -> bool:
    """Whether the CPU computes in bf16 natively (OpenVINO's bf16 is only faster with these)."""
    return bool(flags & BF16_FLAGS)


def int8_saturates(flags: frozenset[str] | None = None) -> bool:
    """Whether 8-bit INT8 weights can saturate this CPU's INT8 kernels (x86 without VNNI).

    ``False`` where the flags are unknown (no /proc/cpuinfo) or the CPU is not x86 (ARM's dot
    products accumulate in int32)."""
    if flags is None:
        flags = cpu_description()[1]
    return "avx2" in flags and not flags & INT8_DOT_FLAGS
