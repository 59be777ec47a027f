"""Benchmark numbers and how they are printed (trtexec style) or saved (JSON).

All latencies are computed here from per-frame stage durations, in one place,
so the console table and the JSON always agree.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Stage order in reports; a stage with no samples is left out.
STAGES = ("decode", "preprocess", "h2d", "compute", "d2h", "infer", "postprocess", "end_to_end", "infer_only")
PERCENTILES = (50, 90, 99)


@dataclass
class StageStats:
    n: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float

    @classmethod
    def of(cls, seconds: list[float] | np.ndarray) -> StageStats:
        a = np.asarray(seconds, np.float64) * 1e3
        p50, p90, p99 = np.percentile(a, PERCENTILES)
        return cls(int(a.size), float(a.mean()), float(p50), float(p90), float(p99), float(a.max()), float(a.min()))


@dataclass
class RunReport:
    """One backend's run over the measured frames."""

    label: str  # e.g. "openvino bf16"
    backend: dict[str, Any]  # BackendInfo as a dict
    frames: int
    warmup: int
    e2e_fps: float  # measured frames / wall time of the pipelined run
    infer_only_fps: float  # frames / time of back-to-back infer() on preloaded frames
    stages: dict[str, StageStats] = field(default_factory=dict)
    dropped: int = 0

    @property
    def e2e_over_infer(self) -> float:
        return self.e2e_fps / self.infer_only_fps if self.infer_only_fps else float("nan")


@dataclass
class BenchReport:
    model: dict[str, Any]
    source: dict[str, Any]
    host: dict[str, Any]
    runs: list[RunReport]
    command: str

    def to_json(self) -> str:
        d = asdict(self)
        for r, rd in zip(self.runs, d["runs"], strict=True):
            rd["e2e_over_infer"] = r.e2e_over_infer
        return json.dumps(d, indent=2)


def host_info() -> dict[str, Any]:
    """CPU model, core count and library versions, for the report header."""
    import cv2

    cpu = platform.processor() or platform.machine()
    flags = ""
    try:  # one read of /proc/cpuinfo for both the model name and the features that matter here
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:  # not Linux: keep platform's answer and report no flags
        text = ""
    for line in text.splitlines():
        if line.startswith("model name") and cpu == (platform.processor() or platform.machine()):
            cpu = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            have = line.split(":", 1)[1].split()
            flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16") if f in have)
            break
    return {
        "cpu": cpu,
        "cpu_features": flags,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "os": f"{platform.system()} {platform.release()}",
    }


def format_report(rep: BenchReport) -> str:
    """Human-readable summary, trtexec style."""
    m, s, h = rep.model, rep.source, rep.host
    lines = ["=== rtseg-bench ===", f"Command: {rep.command}"]
    trained = "" if m.get("trained") else "  [RANDOM, UNTRAINED weights: speed only, labels meaningless]"
    lines.append(f"Model: {m['name']}, {m['num_classes']} classes, input {m['input_size']}, batch {m['batch']}{trained}")
    lines.append(f"Source: {s['description']}, {s.get('width')}x{s.get('height')}, "
                 f"{rep.runs[0].frames if rep.runs else 0} measured frames after {rep.runs[0].warmup if rep.runs else 0} warm-up")
    lines.append(f"Host: {h['cpu']} ({h['usable_cpus']} usable CPUs; {h['cpu_features']}), Python {h['python']}, "
                 f"numpy {h['numpy']}, OpenCV {h['opencv']}")
    for r in rep.runs:
        b = r.backend
        vers = ", ".join(f"{k} {v}" for k, v in b.get("versions", {}).items())
        lines.append("")
        lines.append(f"--- {r.label}: backend {b['backend']} on {b['device']}, precision {b['precision']}, "
                     f"threads {b['threads'] if b['threads'] else 'default'} ({vers})")
        lines.append(f"Throughput: end-to-end {r.e2e_fps:.1f} FPS | inference-only {r.infer_only_fps:.1f} FPS | "
                     f"end-to-end / inference-only = {r.e2e_over_infer:.2f}" + (f" | dropped {r.dropped}" if r.dropped else ""))
        lines.append(f"{'Latency (ms)':<14}{'mean':>8}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
        for name in STAGES:
            st = r.stages.get(name)
            if st is None:
                continue
            lines.append(f"  {name:<12}{st.mean_ms:8.2f}{st.p50_ms:8.2f}{st.p90_ms:8.2f}{st.p99_ms:8.2f}{st.max_ms:8.2f}")
    if len(rep.runs) > 1:
        base = rep.runs[0]
        lines.append("")
        lines.append(f"=== Compare (relative to {base.label}) ===")
        lines.append(f"{'run':<24}{'e2e FPS':>10}{'x':>7}{'infer FPS':>11}{'x':>7}{'infer p50 ms':>14}")
        for r in rep.runs:
            p50 = r.stages["infer"].p50_ms if "infer" in r.stages else float("nan")
            lines.append(f"{r.label:<24}{r.e2e_fps:10.1f}{r.e2e_fps / base.e2e_fps:7.2f}"
                         f"{r.infer_only_fps:11.1f}{r.infer_only_fps / base.infer_only_fps:7.2f}{p50:14.2f}")
    return "\n".join(lines)
