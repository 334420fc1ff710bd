"""Disparity -> distance on a torch device: postprocess.calibration's rules, operation for operation.

The relative near/far rule takes its percentiles over the same fixed-seed sample of valid
pixels (stats.percentile_sample) and finds numpy's values (stats.percentiles); the float32
arithmetic is then the reference's, one operation at a time (multiply, add, divide, clip),
so distances agree to the last bit on the CPU and within float32 rounding elsewhere.
"""

from __future__ import annotations

import numpy as np
import torch

from . import stats


def _check_range(near: float, far: float) -> None:
    if not (np.isfinite(near) and np.isfinite(far) and 0.0 < near < far):
        raise ValueError(f"need finite 0 < near < far, got near={near}, far={far}")


def finite(values: torch.Tensor) -> torch.Tensor:
    """torch.isfinite, in two vectorised operations (|x| < inf is False for NaN and +-inf)."""
    return values.abs() < float("inf")


def _clamped_inverse(inv: torch.Tensor, mask: torch.Tensor, near: float, far: float) -> torch.Tensor:
    out = torch.reciprocal(inv)
    out = torch.clamp(out, float(np.float32(near)), float(np.float32(far)))
    return torch.where(mask, out, torch.tensor(np.float32(far), device=inv.device))


def relative_to_distance(disparity: torch.Tensor, near: float, far: float, *, valid: torch.Tensor | None = None,
                         low_percentile: float = 2.0, high_percentile: float = 98.0):
    """calibration.relative_to_distance on tensors: (distance float32, mask bool)."""
    _check_range(near, far)
    if not 0.0 <= low_percentile < high_percentile <= 100.0:
        raise ValueError(
            f"need 0 <= low_percentile < high_percentile <= 100, got {low_percentile}, {high_percentile}")
    d = disparity.to(torch.float32)
    mask = finite(d)
    if valid is not None:
        mask &= valid
    far_map = torch.full(d.shape, float(far), dtype=torch.float32, device=d.device)
    if not bool(mask.any()):
        return far_map, mask
    d_lo, d_hi = (float(v) for v in stats.percentiles(stats.percentile_sample(d, mask),
                                                      [low_percentile, high_percentile]))
    if d_hi <= d_lo:
        return far_map, mask
    slope = float(np.float32((1.0 / near - 1.0 / far) / (d_hi - d_lo)))
    offset = float(np.float32(1.0 / far - d_lo * (1.0 / near - 1.0 / far) / (d_hi - d_lo)))
    inv = d * slope
    inv += offset
    mask &= inv > 0.0
    return _clamped_inverse(inv, mask, near, far), mask


def metric_to_distance(disparity: torch.Tensor, near: float, far: float, *, valid: torch.Tensor | None = None):
    """calibration.metric_to_distance on tensors: (distance float32 clamped to [near, far], mask bool)."""
    _check_range(near, far)
    d = disparity.to(torch.float32)
    mask = finite(d) & (d > 0.0)
    if valid is not None:
        mask &= valid
    return _clamped_inverse(d, mask, near, far), mask


def mark_far_field(distance: torch.Tensor, mask: torch.Tensor, far: float, *, tolerance: float = 1e-3):
    """postprocess.mark_far_field: pixels at or beyond `far` (within `tolerance`) take `far`, off the mask."""
    far_pixels = ~finite(distance) | (distance >= far * (1.0 - tolerance))
    far_value = torch.tensor(np.float32(far), device=distance.device)
    return torch.where(far_pixels | ~mask, far_value, distance), mask & ~far_pixels
