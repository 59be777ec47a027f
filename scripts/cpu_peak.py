"""What this CPU's cores really compute: large matrix products on all cores, f32 and bf16 (oneDNN
through torch), as GFLOP/s; the reference for docs/benchmarks.md's "fraction of peak".

    .venv/bin/python scripts/cpu_peak.py

A large GEMM reaches close to the FMA units' limit, so it measures the clock the cores really run
at (a VM's /proc/cpuinfo shows the nominal one) times the operations per cycle of the instructions
used. A multiply-add counts as two operations, as the model GFLOPs in docs/models.md do.
"""

from __future__ import annotations

import os
import time

import torch


def gemm_rate(dtype: torch.dtype, n: int = 3072, reps: int = 6) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up: kernel selection, page faults
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


if __name__ == "__main__":
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"threads {torch.get_num_threads()}")
    for dt in (torch.float32, torch.bfloat16):
        print(f"{str(dt).removeprefix('torch.')} GEMM: {gemm_rate(dt):.0f} GFLOP/s")
