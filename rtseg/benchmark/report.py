"""Benchmark numbers and how they are printed (trtexec style) or saved (JSON).

The latencies are the pipeline's own: ``rtseg.pipeline.stats`` computes every
``Dist`` (one percentile set: p50/p90/p95/p99/max, plus mean) over the one
stage list ``STAGES``, and ``format_stage_table`` prints them for
``rtseg-bench`` exactly as for ``rtseg-run``. Inference-only timing is a
separate, labelled figure (back-to-back ``infer`` on preloaded frames, no
pipeline), never one of the pipeline's stages.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rtseg.core.cpu import cpu_description, reported_flags
from rtseg.pipeline.stats import Dist, format_stage_table
from rtseg.runtime.base import precision_text, schedule_text


@dataclass
class RunReport:
    """One backend's run: inference-only over preloaded frames, then the app's pipeline end to end."""

    label: str  # e.g. "openvino bf16"
    backend: dict[str, Any]  # BackendInfo as a dict (precision: what really ran)
    frames: int  # measured frames of the end-to-end run (and of the inference-only loop)
    warmup: int
    e2e_fps: float  # measured frames / wall time of the pipelined run (nan when it was not run)
    infer_only_fps: float  # frames / time of back-to-back infer() on preloaded frames
    infer_only: Dist  # per-call latency of that loop (ms)
    stages: dict[str, Dist] = field(default_factory=dict)  # the pipeline's stages (ms), STAGES order
    dropped: int = 0  # frames the pipeline dropped (0: benchmark mode drops nothing)
    note: str | None = None  # why something was not measured
    model: dict[str, Any] = field(default_factory=dict)  # what ran: name, classes, input size, batch, weights
    rounds: int = 1  # inference-only and end-to-end measured alternately in this many parts
    #: end-to-end / inference-only of each round: their spread says how far one run can be trusted
    round_ratios: list[float] = field(default_factory=list)

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

    cpu, flags = cpu_description()
    return {
        "cpu": cpu,
        "cpu_features": reported_flags(flags),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "os": f"{platform.system()} {platform.release()}",
    }


def _rounds_text(r: RunReport) -> str:
    """`` (4 interleaved rounds, 0.91-1.02 each)``: the per-round spread shows how much the machine
    drifted while it was measured (on a shared 2-core VM, 200-frame runs spread 0.81-1.10)."""
    if r.rounds <= 1:
        return ""
    ratios = [x for x in r.round_ratios if np.isfinite(x)]
    spread = f", {min(ratios):.2f}-{max(ratios):.2f} each" if len(ratios) > 1 else ""
    return f" ({r.rounds} interleaved rounds{spread})"


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
        extra = b.get("extra", {})
        sched = schedule_text(extra)
        lines.append(f"--- {r.label}: backend {b['backend']} on {b['device']}, "
                     f"precision {precision_text(b['precision'], extra)}, "
                     f"threads {b['threads'] if b['threads'] else 'default'}" + (f", {sched}" if sched else "")
                     + f" ({vers})")
        lines.append(f"Throughput: end-to-end {r.e2e_fps:.1f} FPS (the app's pipeline, benchmark mode) | "
                     f"inference-only {r.infer_only_fps:.1f} FPS | end-to-end / inference-only = "
                     f"{r.e2e_over_infer:.2f}" + _rounds_text(r)
                     + (f" | dropped {r.dropped}" if r.dropped else ""))
        if r.note:
            lines.append(f"Note: {r.note}")
        lines.extend(format_stage_table(r.stages))
        io = r.infer_only
        how = ("back-to-back infer()" if not sched else
               f"back to back, {sched}; ms = each frame's submit to labels")
        lines.append(f"Inference only ({how} on preloaded frames, not the pipeline): "
                     f"mean {io.mean:.2f} | p50 {io.p50:.2f} | p90 {io.p90:.2f} | p95 {io.p95:.2f} | "
                     f"p99 {io.p99:.2f} | max {io.max:.2f} ms over {io.n} calls")
    if len(rep.runs) > 1:
        base = rep.runs[0]
        lines.append("")
        lines.append(f"=== Compare (relative to {base.label}) ===")
        lines.append(f"{'run':<24}{'e2e FPS':>10}{'x':>7}{'infer FPS':>11}{'x':>7}{'infer p50 ms':>14}")
        for r in rep.runs:
            p50 = r.stages["infer"].p50 if "infer" in r.stages else float("nan")
            lines.append(f"{r.label:<24}{r.e2e_fps:10.1f}{r.e2e_fps / base.e2e_fps:7.2f}"
                         f"{r.infer_only_fps:11.1f}{r.infer_only_fps / base.infer_only_fps:7.2f}{p50:14.2f}")
    return "\n".join(lines)
