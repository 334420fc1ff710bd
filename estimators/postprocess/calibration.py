"""Turning fused disparity into distance: the documented near/far rule.

Relative disparity (aligned, but still up to an unknown scale and shift) is mapped to
inverse distance by the affine map that sends its `low_percentile` (default 2nd) value
to 1/far and its `high_percentile` (default 98th) value to 1/near:

    1/distance = 1/far + (d - d_lo) * (1/near - 1/far) / (d_hi - d_lo)

Affine in disparity is the only family that respects the estimator's ambiguity, so the
shape of the scene is kept and only two numbers are chosen. Distances are then clamped
to [near, far], so about 2% of pixels sit at each bound. A pixel is invalid (mask False,
distance = far) where the input is not finite, where the caller's mask says so, or where
the mapped inverse distance is <= 0, i.e. beyond infinity: sky and background that the
model puts further than the scene's far end. The percentiles are taken over valid pixels
only: sky covering more than `low_percentile` percent of the frame must be masked out by
the caller (`valid`), or the far end lands on the sky. Above PERCENTILE_SAMPLES valid
pixels (a 4K frame has 7.4 million) the percentiles are those of a fixed-seed uniform
random sample of about that many valid pixels: exact ones cost most of a second at 8K,
and the sample's 2nd percentile lies within the true 1.99th..2.01st. (Random, not a
regular stride: a stride can beat against the regular structure of an upsampled map.)

Metric inverse distance needs no rule: distance = 1/disparity, clamped to [near, far]
(non-positive or non-finite -> far, invalid).

No output contains NaN or Inf.
"""

from __future__ import annotations

import numpy as np

from ..sampling import PERCENTILE_SAMPLES, percentile_sample

__all__ = ["PERCENTILE_SAMPLES", "metric_to_distance", "percentile_sample", "relative_to_distance"]


def _check_range(near: float, far: float) -> None:
    if not (np.isfinite(near) and np.isfinite(far) and 0.0 < near < far):
        raise ValueError(f"need finite 0 < near < far, got near={near}, far={far}")


def relative_to_distance(
    disparity: np.ndarray,
    near: float,
    far: float,
    *,
    valid: np.ndarray | None = None,
    low_percentile: float = 2.0,
    high_percentile: float = 98.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Relative disparity -> (distance float32, mask bool) by the percentile rule above."""
    _check_range(near, far)
    if not 0.0 <= low_percentile < high_percentile <= 100.0:
        raise ValueError(
            f"need 0 <= low_percentile < high_percentile <= 100, got {low_percentile}, {high_percentile}"
        )
    d = np.asarray(disparity, dtype=np.float32)
    mask = np.isfinite(d)
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    if not mask.any():
        return np.full(d.shape, far, dtype=np.float32), mask
    d_lo, d_hi = (float(v) for v in np.percentile(percentile_sample(d, mask), [low_percentile, high_percentile]))
    if d_hi <= d_lo:  # a flat map: everything at one distance, the far one
        return np.full(d.shape, far, dtype=np.float32), mask
    # Whole-array float32 arithmetic in place (boolean gathers and temporaries are slow at 8K).
    slope = np.float32((1.0 / near - 1.0 / far) / (d_hi - d_lo))
    offset = np.float32(1.0 / far - d_lo * (1.0 / near - 1.0 / far) / (d_hi - d_lo))
    inv = np.multiply(d, slope)
    inv += offset
    with np.errstate(invalid="ignore"):
        mask &= inv > 0.0  # NaN and Inf inputs are already out of the mask
    return _clamped_inverse(inv, mask, near, far, in_place=True), mask


def _clamped_inverse(inv: np.ndarray, mask: np.ndarray, near: float, far: float, in_place: bool = False) -> np.ndarray:
    """float32 1 / inv clamped to [near, far] where `mask`, `far` elsewhere (`in_place`: reuse `inv`)."""
    out = inv if in_place else np.empty(inv.shape, np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        np.divide(np.float32(1.0), inv, out=out)
        np.clip(out, np.float32(near), np.float32(far), out=out)
    np.copyto(out, np.float32(far), where=~mask)
    return out


def metric_to_distance(
    disparity: np.ndarray, near: float, far: float, *, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Metric inverse distance -> (distance float32 clamped to [near, far], mask bool)."""
    _check_range(near, far)
    d = np.asarray(disparity, dtype=np.float32)
    mask = np.isfinite(d) & (d > 0.0)
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    return _clamped_inverse(d, mask, near, far), mask
