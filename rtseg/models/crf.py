"""Fully connected CRF refinement as a graph module (DeepLab's back-end, mean-field as in CRF-as-RNN).

The CRF of Krähenbühl & Koltun (2011) over the pixels of a frame: unary ``-log P(x_i)``
from the network's softmax, pairwise Potts terms weighted by two Gaussian kernels,

    appearance (bilateral)  w_b exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2)
    smoothness (Gaussian)   w_g exp(-|p_i - p_j|^2 / 2 theta_gamma^2)

(``p`` positions in model-input pixels, ``I`` RGB colours in 0..255), solved by
mean-field iterations with parallel updates:

    Q = softmax(logits)
    repeat ITERS times:  m_l(i) = sum_{j != i} k(i, j) Q_l(j)      (message passing)
                         Q = softmax(logits + m)                    (Potts compatibility + unary)

With Potts compatibility ``mu(l, l') = [l != l']`` the update
``Q_i(l) ~ exp(-U_i(l) - sum_j k(i,j) sum_{l' != l} Q_j(l'))`` differs from the one above
only by a term constant in ``l``, which the softmax cancels. The module returns the
final ``logits + m``, whose argmax is the refined label map (equal to the unary
argmax when both weights are 0 or ``iterations`` is 0).

**Bounded window (as ConvCRF does).** The exact CRF connects every pixel pair,
which a graph cannot afford; here a pixel exchanges messages only with the
``window x window`` neighbourhood around it. To reach further at the same cost the
messages are computed on a grid ``downsample`` times coarser (ConvCRF's "blur"):
``Q`` and the colours are average-pooled, each coarse cell stands for its
``downsample^2`` pixels (its own cell for the ``downsample^2 - 1`` others), the kernel
uses full-resolution distances, and the message is upsampled bilinearly before it
is added to the full-resolution unary. With ``downsample=1`` and a window that covers
the image, the result is the exact dense CRF's (tests check both regimes against a
brute-force dense implementation).

The kernel of each window offset is computed once per frame (the colour term depends
on the frame); each iteration is then ``window^2`` shift-multiply-adds on the coarse
grid: Pad, Slice, Mul, Add, Exp, AveragePool, Resize, Softmax in ONNX, which every
backend runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.core.errors import UserInputError

#: ONNX metadata key recording the refinement (also in ``ModelMeta.extra["refine"]``).
ONNX_REFINE_KEY = "rtseg.refine"


@dataclass(frozen=True)
class CRFParams:
    """Options of the mean-field CRF.

    The defaults were tuned on CamVid val with the bundled STDC1 model at 360x480
    (``scripts/tune_crf.py``, docs/zoo.md): +0.5 mIoU there. The weights are small
    because a message sums the kernel over every pixel a window reaches (49 cells of
    16 pixels here), not over a handful of neighbours; the smoothness kernel did not
    help that model (it blurs thin classes: poles, signs), so its weight defaults to 0.
    """

    iterations: int = 5
    window: int = 7  # side of the square neighbourhood on the coarse grid (odd)
    downsample: int = 4  # coarse grid factor: 1, 2, 4 or 8 (input sides are multiples of 8)
    w_bilateral: float = 0.01
    theta_alpha: float = 40.0  # bilateral kernel: position width (pixels)
    theta_beta: float = 5.0  # bilateral kernel: colour width (0..255 RGB)
    w_gaussian: float = 0.0
    theta_gamma: float = 6.0  # smoothness kernel: position width (pixels)

    def __post_init__(self) -> None:
        if not isinstance(self.iterations, int) or not 0 <= self.iterations <= 50:
            raise UserInputError(f"CRF iterations must be an integer in 0..50, got {self.iterations!r}")
        if not isinstance(self.window, int) or self.window < 1 or self.window % 2 == 0 or self.window > 31:
            raise UserInputError(f"CRF window must be an odd integer in 1..31, got {self.window!r}")
        if self.downsample not in (1, 2, 4, 8):
            raise UserInputError(f"CRF downsample must be 1, 2, 4 or 8, got {self.downsample!r}")
        for name in ("theta_alpha", "theta_beta", "theta_gamma"):
            if not getattr(self, name) > 0:
                raise UserInputError(f"CRF {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("w_bilateral", "w_gaussian"):
            if not getattr(self, name) >= 0:
                raise UserInputError(f"CRF {name} must be >= 0, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"method": "crf", **asdict(self)}

    def describe(self) -> str:
        return (f"CRF ({self.iterations} mean-field iterations, {self.window}x{self.window} window on a 1/"
                f"{self.downsample} grid, bilateral w={self.w_bilateral:g} xy={self.theta_alpha:g} "
                f"rgb={self.theta_beta:g}, gaussian w={self.w_gaussian:g} xy={self.theta_gamma:g})")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CRFParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def parse_refine(spec: str | None) -> CRFParams | None:
    """``--refine`` value -> parameters (None for no refinement).

    ``crf`` (defaults), ``crf:ITERS``, and optionally ``,key=value`` pairs for any
    ``CRFParams`` field, e.g. ``crf:10,w_bilateral=3,theta_beta=13``. ``none`` turns it off.
    """
    if spec is None or spec.strip().lower() in ("", "none", "off"):
        return None
    head, *pairs = [p.strip() for p in spec.split(",")]
    method, _, iters = head.partition(":")
    if method.lower() != "crf":
        raise UserInputError(f"unknown refinement {method!r}: use --refine crf[:ITERS][,key=value...]")
    changes: dict[str, Any] = {}
    if iters:
        if not iters.isdigit():
            raise UserInputError(f"--refine crf:ITERS needs an integer count of iterations, got {iters!r}")
        changes["iterations"] = int(iters)
    types = {f.name: f.type for f in fields(CRFParams)}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or key not in types:
            raise UserInputError(f"bad CRF option {pair!r}: write key=value with key one of {', '.join(types)}")
        try:
            changes[key] = int(value) if types[key] in ("int", int) else float(value)
        except ValueError:
            raise UserInputError(f"bad CRF option {pair!r}: {value!r} is not a number") from None
    return replace(CRFParams(), **changes)


def refine_json(params: CRFParams) -> str:
    return json.dumps(params.to_dict(), sort_keys=True)


class MeanFieldCRF(nn.Module):
    """``forward(logits [N, C, H, W], rgb [N, 3, H, W] in 0..255) -> refined logits``."""

    spatial_b: torch.Tensor  # buffers registered in __init__
    spatial_g: torch.Tensor

    def __init__(self, params: CRFParams) -> None:
        super().__init__()
        self.params = params
        r = params.window // 2
        s = params.downsample
        offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
        self.offsets = offsets
        # Per-offset constants: squared full-resolution distance and how many pixels the
        # neighbour cell stands for (its own cell excludes the pixel itself).
        dist2 = torch.tensor([float((dy * s) ** 2 + (dx * s) ** 2) for dy, dx in offsets])
        count = torch.tensor([float(s * s - 1 if (dy, dx) == (0, 0) else s * s) for dy, dx in offsets])
        self.register_buffer("spatial_b", torch.exp(-dist2 / (2 * params.theta_alpha ** 2)) * count
                             * params.w_bilateral, persistent=False)
        self.register_buffer("spatial_g", torch.exp(-dist2 / (2 * params.theta_gamma ** 2)) * count
                             * params.w_gaussian, persistent=False)

    def kernels(self, rgb: torch.Tensor) -> torch.Tensor:
        """``[N, D, h, w]``: the combined (weighted bilateral + Gaussian) kernel of each window offset."""
        p = self.params
        r = p.window // 2
        feat = rgb / p.theta_beta
        if p.downsample > 1:
            feat = F.avg_pool2d(feat, p.downsample)
        h, w = feat.shape[-2:]
        padded = F.pad(feat, (r, r, r, r), mode="replicate")
        ks = []
        for d, (dy, dx) in enumerate(self.offsets):
            other = padded[:, :, r + dy: r + dy + h, r + dx: r + dx + w]
            colour = ((feat - other) ** 2).sum(dim=1, keepdim=True)
            ks.append(torch.exp(-0.5 * colour) * self.spatial_b[d] + self.spatial_g[d])
        return torch.cat(ks, dim=1)

    def message(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """sum over window offsets of kernel x shifted Q, on the coarse grid."""
        r = self.params.window // 2
        h, w = q.shape[-2:]
        # Zero padding: neighbours outside the frame send nothing.
        padded = F.pad(q, (r, r, r, r))
        out = torch.zeros_like(q)
        for d, (dy, dx) in enumerate(self.offsets):
            out = out + k[:, d: d + 1] * padded[:, :, r + dy: r + dy + h, r + dx: r + dx + w]
        return out

    def forward(self, logits: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
        p = self.params
        if p.iterations == 0 or (p.w_bilateral == 0 and p.w_gaussian == 0):
            return logits
        k = self.kernels(rgb)
        size = logits.shape[-2:]
        refined = logits
        for _ in range(p.iterations):
            q = torch.softmax(refined, dim=1)
            if p.downsample > 1:
                q = F.avg_pool2d(q, p.downsample)
            m = self.message(q, k)
            if p.downsample > 1:
                m = F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=False)
            refined = logits + m
        return refined


def dense_crf_reference(logits: torch.Tensor, rgb: torch.Tensor, params: CRFParams) -> torch.Tensor:
    """The exact fully connected CRF (every pixel pair), by brute force: for tests on tiny images.

    Same energy and the same parallel mean-field updates as ``MeanFieldCRF``; ``window``
    and ``downsample`` are ignored. Memory is ``(H W)^2``: keep ``H W`` to a few thousand.
    """
    n, c, h, w = logits.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)  # [P, 2]
    d_pos = torch.cdist(pos, pos) ** 2
    out = []
    for b in range(n):
        col = rgb[b].double().flatten(1).T  # [P, 3]
        d_col = torch.cdist(col, col) ** 2
        k = (params.w_bilateral * torch.exp(-d_pos / (2 * params.theta_alpha ** 2) - d_col / (2 * params.theta_beta ** 2))
             + params.w_gaussian * torch.exp(-d_pos / (2 * params.theta_gamma ** 2)))
        k.fill_diagonal_(0.0)
        u = logits[b].double().flatten(1)  # [C, P]
        refined = u
        for _ in range(params.iterations):
            q = torch.softmax(refined, dim=0)
            refined = u + q @ k  # k is symmetric
        out.append(refined.view(c, h, w))
    return torch.stack(out).to(logits.dtype)
