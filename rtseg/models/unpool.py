"""Max-pooling that records its "switches" and the unpooling that uses them (SegNet, DeconvNet).

``F.max_unpool2d`` is not used: torch 2.13's TorchScript ONNX exporter fails on it
(a tensor-valued size check while tracing) and the dynamo exporter needs
``onnxscript``. Unpooling after a 2x2, stride-2 pool is instead written with ops
every backend has:

    values, indices  [N, C, h, w]   (indices: flat position h_in * W + w_in in the H x W plane)
    -> repeat each cell over its 2x2 window (Unsqueeze, Expand, Reshape), crop to H x W
    -> keep a value only where its recorded index equals the pixel's own flat position
       (Equal against a constant position map, Where), zeros elsewhere

which is exactly ``max_unpool2d`` for non-overlapping windows: every pixel belongs to
one window, so at most one value can land on it. Pooling uses ``ceil_mode`` so odd
sides keep their last row/column (a partial window's maximum is recorded like any other).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def max_pool_with_indices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2 max-pool, stride 2, ceil mode; returns (values, flat indices into each H x W plane)."""
    values, indices = F.max_pool2d(x, 2, 2, ceil_mode=True, return_indices=True)
    return values, indices


def _repeat2x2(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    n, c, h, w = t.shape
    up = t[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)
    return up[:, :, : size[0], : size[1]]


def max_unpool(values: torch.Tensor, indices: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Put every pooled value back at its recorded position in an ``size`` (H, W) map of zeros.

    ``values``/``indices`` come from ``max_pool_with_indices`` on a map of that size.
    """
    height, width = int(size[0]), int(size[1])
    up_values = _repeat2x2(values, (height, width))
    up_indices = _repeat2x2(indices, (height, width))
    # The flat position of every pixel; a constant once the export fixes the size.
    position = torch.arange(height * width, device=indices.device, dtype=indices.dtype).view(1, 1, height, width)
    return torch.where(up_indices == position, up_values, torch.zeros((), dtype=values.dtype, device=values.device))
