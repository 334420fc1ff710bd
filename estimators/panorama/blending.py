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
    wa = np.cos(np.minimum(np.abs(a), 1.0) * (0.5 * np.pi))
    wb = np.cos(np.minimum(np.abs(b), 1.0) * (0.5 * np.pi))
    w = wa * wb
    return (w * w).astype(np.float32)


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


@functools.lru_cache(maxsize=4)
def _weight_sum(views: tuple[View, ...], height: int, width: int) -> np.ndarray:
    """Sum of the views' border weights per equirect pixel, float32 [H * W] (all pixels valid)."""
    weight_sum = np.zeros(height * width, dtype=np.float32)
    for view in views:
        weight_sum[footprint(view, height, width).pixels] += _footprint_weights(view, height, width)
    weight_sum.setflags(write=False)
    return weight_sum


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
    views = tuple(views)
    for i, (values, view) in enumerate(zip(view_maps, views, strict=True)):
        if np.shape(values) != (view.height, view.width):
            raise ValueError(
                f"view {i}: map shape {np.shape(values)} does not match the view's {(view.height, view.width)}"
            )
    masks = None if valid is None else [np.asarray(v, dtype=bool) for v in valid]
    if masks is not None and all(m.all() for m in masks):
        masks = None  # the usual case: the geometric weight sum is cached per layout
    # float32 accumulation: weights are <= 1 and few views overlap, so the sums keep ~7 digits.
    total = np.zeros(height * width, dtype=np.float32)
    weight_sum = _weight_sum(views, height, width) if masks is None else np.zeros(height * width, dtype=np.float32)
    for i, (values, view) in enumerate(zip(view_maps, views, strict=True)):
        fp = footprint(view, height, width)
        weights = _footprint_weights(view, height, width)
        if masks is not None:
            weights = weights * (fp.sample(masks[i].astype(np.float32)) > 0.999)
            weight_sum[fp.pixels] += weights
        # Footprint pixels are unique, so fancy-index accumulation is exact.
        total[fp.pixels] += weights * fp.sample(values)
    # Unseen pixels have total 0 too: dividing by the smallest float keeps them 0 without a
    # masked division (slow at 8K).
    merged = np.divide(total, np.maximum(weight_sum, np.finfo(np.float32).tiny), out=total)
    return merged.reshape(height, width), np.array(weight_sum, dtype=np.float32).reshape(height, width)
