"""Blending per-view maps back into one equirect map without steps at view borders.

Each view's weight is ``cos^2(pi/2 * a) * cos^2(pi/2 * b)`` of its normalised view
coordinates (a, b in [-1, 1], edges at +-1): 1 at the centre, falling smoothly to 0 at
every edge, so a view's values fade out before its border and no border leaves a step.
Weights are normalised per equirect pixel. The panorama's wrap and poles need no
special case: the footprints are computed from rays.
"""

from __future__ import annotations

import functools

import numpy as np

from .projection import View, footprint


def border_weight(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Blend weight of normalised view coordinates (edges at +-1): cos^2 * cos^2, 0 at edges."""
    wa = np.cos(0.5 * np.pi * np.clip(np.abs(a), 0.0, 1.0)) ** 2
    wb = np.cos(0.5 * np.pi * np.clip(np.abs(b), 0.0, 1.0)) ** 2
    return (wa * wb).astype(np.float32)


def view_weight(view: View, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Blend weight of a view at normalised coordinates; uniform for the whole-frame equirect view."""
    if view.projection == "equirect":
        return np.ones(np.shape(a), dtype=np.float32)
    return border_weight(a, b)


@functools.lru_cache(maxsize=64)
def _footprint_weights(view: View, height: int, width: int) -> np.ndarray:
    fp = footprint(view, height, width)
    weights = view_weight(view, fp.a, fp.b)
    weights.setflags(write=False)
    return weights


def blend_to_equirect(
    view_maps: list[np.ndarray] | np.ndarray,
    views: tuple[View, ...],
    height: int,
    width: int,
    valid: list[np.ndarray] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-view maps [h, w] into an H x W equirect map by the border weights.

    `valid` (optional, bool per view pixel) drops pixels a view has no value for (and
    their bilinear neighbours). Returns (merged float32 [H, W], weight sum float32 [H, W]);
    where the weight sum is 0 no view saw the pixel and the merged value is 0.
    """
    if len(view_maps) != len(views):
        raise ValueError(f"got {len(view_maps)} view maps for {len(views)} views")
    total = np.zeros(height * width, dtype=np.float64)
    weight_sum = np.zeros(height * width, dtype=np.float64)
    for i, (values, view) in enumerate(zip(view_maps, views, strict=True)):
        values = np.asarray(values, dtype=np.float32)
        if values.shape != (view.height, view.width):
            raise ValueError(
                f"view {i}: map shape {values.shape} does not match the view's {(view.height, view.width)}"
            )
        fp = footprint(view, height, width)
        weights = _footprint_weights(view, height, width)
        if valid is not None:
            weights = weights * (fp.sample(np.asarray(valid[i], dtype=np.float32)) > 0.999)
        # Footprint pixels are unique, so fancy-index accumulation is exact.
        total[fp.pixels] += weights * fp.sample(values)
        weight_sum[fp.pixels] += weights
    merged = np.divide(total, weight_sum, out=np.zeros_like(total), where=weight_sum > 0)
    return (
        merged.reshape(height, width).astype(np.float32),
        weight_sum.reshape(height, width).astype(np.float32),
    )
