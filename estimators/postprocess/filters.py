"""Post-processing of one depth frame: hole filling, edge-aware upsampling, smoothing, far field.

Pure numpy/OpenCV functions on float32 [H, W] maps. Every filter is wrap-aware when
`wrap=True` (the default; equirect footage): longitude wraps, so column W-1 is the
neighbour of column 0 and the filters see wrapped content across the seam instead of a
border. Such a filter commutes with rolling the image sideways, which is what "no seam
at the wrap" means. Rows are never wrapped (above the top row is the other side of the
pole, not the bottom row); they are extended by reflection.

Conversion to distance uses calibration.py: `metric_to_distance` for inverse metres and
the percentile rule `relative_to_distance` for relative disparity; `mark_far_field`
is the sky/far step.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Smoothing = Literal["none", "median", "bilateral"]


def _check_map(values: np.ndarray, what: str = "values") -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"{what} must be a 2-D [H, W] array, got shape {values.shape}")
    return values.astype(np.float32, copy=False)


def _check_mask(mask: np.ndarray, shape: tuple[int, ...], what: str = "valid") -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"{what} mask has shape {mask.shape}, expected {shape}")
    return mask


def pad_columns(values: np.ndarray, pad: int, wrap: bool = True) -> np.ndarray:
    """`values` [H, W, ...] with `pad` columns added each side: wrapped content, or edge copies."""
    if pad <= 0:
        return values
    width = values.shape[1]
    if wrap:
        index = np.arange(-pad, width + pad) % width
    else:
        index = np.clip(np.arange(-pad, width + pad), 0, width - 1)
    return values[:, index]


def _pad_rows(values: np.ndarray, pad: int) -> np.ndarray:
    if pad <= 0:
        return values
    height = values.shape[0]
    index = np.arange(-pad, height + pad)
    index = np.abs(index)
    index = np.where(index > height - 1, 2 * (height - 1) - index, index)
    return values[np.clip(index, 0, height - 1)]


def _apply_padded(values: np.ndarray, pad: int, wrap: bool, function) -> np.ndarray:
    """Run `function` on `values` padded by `pad` (columns wrapped, rows reflected), cropped back."""
    height, width = values.shape[:2]
    padded = np.ascontiguousarray(_pad_rows(pad_columns(values, pad, wrap), pad))
    return function(padded)[pad : pad + height, pad : pad + width]


# --- hole filling ---------------------------------------------------------------------------


# Rings peeled exactly; the rest of a larger hole is filled at half the size. Large maps peel
# fewer: deep inside a big hole (the sky of a 4K frame) the fill is off the mask anyway.
PEEL_PASSES = 32
SMALL_MAP = 1 << 16
LARGE_MAP_PEEL_PASSES = 8


def _neighbour_indices(flat: np.ndarray, height: int, width: int, wrap: bool):
    """(inside, index) of the 4 neighbours of flat pixel indices (columns wrap when `wrap`)."""
    rows, cols = np.divmod(flat, width)
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < height)
        if wrap:
            c = c % width
        else:
            inside &= (c >= 0) & (c < width)
        yield inside, np.clip(r, 0, height - 1) * width + np.clip(c, 0, width - 1)


def fill_holes(values: np.ndarray, valid: np.ndarray, *, wrap: bool = True) -> np.ndarray:
    """Fill invalid pixels from their valid neighbours, peeling each hole from its rim inward.

    Each pass gives every invalid pixel that touches a known pixel (4-neighbours) the mean
    of its known neighbours, then marks it known. After PEEL_PASSES passes (fewer on large
    maps) what is left
    (the inside of a large hole: the sky of an outdoor frame, say) takes the same fill made
    at half the size, brought back up, so a hole over half a 4K frame costs well under a
    second. Valid pixels are returned unchanged, bit for bit; every filled value is an
    average of valid ones. ValueError if there is no valid pixel to fill from.
    """
    import cv2

    values = _check_map(values)
    valid = _check_mask(valid, values.shape)
    if valid.all():
        return values.copy()
    if not valid.any():
        raise ValueError("cannot fill holes: the map has no valid pixel")
    height, width = values.shape
    out, known = _peel(values, valid, wrap, PEEL_PASSES if values.size <= SMALL_MAP else LARGE_MAP_PEEL_PASSES)
    if not known.all():
        grid = out.reshape(height, width)
        weight = known.reshape(height, width).astype(np.float64)
        size = (max(1, (width + 1) // 2), max(1, (height + 1) // 2))
        total = cv2.resize(grid * weight, size, interpolation=cv2.INTER_AREA)
        share = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
        coarse = fill_holes(np.where(share > 0, total / np.maximum(share, 1e-12), 0.0).astype(np.float32),
                            share > 0, wrap=wrap)
        up = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float64).ravel()
        out[~known] = up[~known]
    result = out.reshape(height, width).astype(np.float32)
    result[valid] = values[valid]
    return result


def _peel(values: np.ndarray, valid: np.ndarray, wrap: bool, passes: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `passes` rings of fill_holes' peeling: (float64 flat values, flat known mask)."""
    height, width = values.shape
    out = np.where(valid, values, 0.0).astype(np.float64).ravel()
    known = valid.ravel().copy()
    holes = np.flatnonzero(~known)
    touching = np.zeros(holes.shape, bool)
    for inside, neighbour in _neighbour_indices(holes, height, width, wrap):
        touching |= inside & known[neighbour]
    ring = holes[touching]
    for _ in range(passes):
        if not ring.size:
            break
        total = np.zeros(ring.shape)
        count = np.zeros(ring.shape)
        following = []
        for inside, neighbour in _neighbour_indices(ring, height, width, wrap):
            use = inside & known[neighbour]
            total += np.where(use, out[neighbour], 0.0)
            count += use
            following.append(neighbour[inside])
        out[ring] = total / count
        known[ring] = True
        following = np.unique(np.concatenate(following))
        ring = following[~known[following]]
    return out, known


# --- resampling and edge-aware refinement -------------------------------------------------


def _source_coords(size_out: int, size_in: int) -> np.ndarray:
    """Pixel-centre aligned coordinates in the input grid of each output pixel."""
    return (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5


def bilinear_upsample(low: np.ndarray, height: int, width: int, *, wrap: bool = True) -> np.ndarray:
    """Bilinear resampling of [h, w] to [height, width] (pixel centres aligned; columns wrap)."""
    low = _check_map(low, "low-resolution map")
    h, w = low.shape
    y = np.clip(_source_coords(height, h), 0.0, h - 1.0)
    x = _source_coords(width, w)
    y0 = np.minimum(np.floor(y).astype(int), max(h - 2, 0))
    fy = (y - y0)[:, None]
    y1 = np.minimum(y0 + 1, h - 1)
    x0 = np.floor(x).astype(int)
    fx = (x - x0)[None, :]
    if wrap:
        x0, x1 = x0 % w, (x0 + 1) % w
    else:
        fx = np.where((x0 < 0)[None, :], 1.0, np.where((x0 >= w - 1)[None, :], 0.0, fx))
        x0, x1 = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    top = low[y0][:, x0] * (1 - fx) + low[y0][:, x1] * fx
    bottom = low[y1][:, x0] * (1 - fx) + low[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _area_downsample(image: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (h, w):
        return image.astype(np.float32)
    return cv2.resize(image.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)


def depth_edges(low: np.ndarray, *, threshold: float = 0.03, wrap: bool = True) -> np.ndarray:
    """Edge strength in 0..1 of a positive depth-like map: relative 3x3 range over `threshold`.

    0 where the map is smooth (the 3x3 range is below `threshold` of the local maximum),
    rising to 1 at twice that.
    """
    import cv2

    low = _check_map(low)
    kernel = np.ones((3, 3), np.uint8)
    high = _apply_padded(low, 1, wrap, lambda p: cv2.dilate(p, kernel))
    small = _apply_padded(low, 1, wrap, lambda p: cv2.erode(p, kernel))
    scale = np.maximum(np.abs(high), np.abs(small))
    relative = (high - small) / np.maximum(scale, 1e-12)
    return np.clip(relative / threshold - 1.0, 0.0, 1.0).astype(np.float32)


def joint_bilateral_upsample(
    low: np.ndarray,
    guide: np.ndarray,
    *,
    radius: int = 1,
    sigma_spatial: float = 0.8,
    sigma_colour: float = 0.03,
    edge_threshold: float = 0.35,
    min_change: float = 0.2,
    widen: float = 1.0,
    wrap: bool = True,
) -> np.ndarray:
    """Upsample `low` [h, w] to the guide's [H, W] size, sharp where the colour guide has edges.

    Joint bilateral upsampling (Kopf et al. 2007): each output pixel is the average of the
    (2 radius)^2 nearest low-resolution samples, weighted by distance (`sigma_spatial`, in
    low-resolution pixels) and by how close the sample's colour (the guide averaged over
    the sample's footprint) is to the pixel's own colour (`sigma_colour`, RGB 0..1), so a
    pixel takes its depth from the side of a depth edge whose colour it shares. It is
    applied only at depth discontinuities: where the relative 3x3 range of `low` exceeds
    `edge_threshold` (full weight at twice that, times `widen`), and only where it moves
    the value by more than `min_change` (relative; full weight at twice that), which keeps
    textured but smooth surfaces from picking up colour texture. Elsewhere the result is
    plain bilinear upsampling, exactly. At equal size it is an edge refinement.
    """
    low = _check_map(low, "low-resolution map")
    guide = np.asarray(guide, dtype=np.float32)
    if guide.ndim != 3 or guide.shape[2] != 3:
        raise ValueError(f"guide must be an [H, W, 3] colour image, got shape {guide.shape}")
    if radius < 1:
        raise ValueError(f"radius must be at least 1, got {radius}")
    height, width = guide.shape[:2]
    h, w = low.shape
    smooth = bilinear_upsample(low, height, width, wrap=wrap)
    blend = bilinear_upsample(depth_edges(low, threshold=edge_threshold, wrap=wrap), height, width, wrap=wrap)
    blend = np.clip(blend * widen, 0.0, 1.0)
    rows, cols = np.nonzero(blend > 0)
    if rows.size == 0:
        return smooth
    low_guide = _area_downsample(guide, h, w)
    y = _source_coords(height, h)[rows]
    x = _source_coords(width, w)[cols]
    y_base, x_base = np.floor(y).astype(int), np.floor(x).astype(int)
    colour = guide[rows, cols]
    total = np.zeros(rows.size)
    weight_sum = np.zeros(rows.size)
    for dy in range(-radius + 1, radius + 1):
        sample_y = y_base + dy
        inside = (sample_y >= 0) & (sample_y < h)
        sample_y = np.clip(sample_y, 0, h - 1)
        for dx in range(-radius + 1, radius + 1):
            sample_x = x_base + dx
            if wrap:
                sample_x_index = sample_x % w
                usable = inside
            else:
                usable = inside & (sample_x >= 0) & (sample_x < w)
                sample_x_index = np.clip(sample_x, 0, w - 1)
            spatial = ((sample_y - y) ** 2 + (sample_x - x) ** 2) / (2.0 * sigma_spatial**2)
            difference = np.sum((low_guide[sample_y, sample_x_index] - colour) ** 2, axis=-1)
            weight = np.exp(-spatial - difference / (2.0 * sigma_colour**2)) * usable
            total += weight * low[sample_y, sample_x_index]
            weight_sum += weight
    refined = np.where(weight_sum > 1e-12, total / np.maximum(weight_sum, 1e-300), smooth[rows, cols])
    out = smooth.copy()
    beta = blend[rows, cols]
    if min_change > 0:
        change = np.abs(refined - smooth[rows, cols]) / np.maximum(np.abs(smooth[rows, cols]), 1e-12)
        beta = beta * np.clip(change / min_change - 1.0, 0.0, 1.0)
    out[rows, cols] = ((1.0 - beta) * smooth[rows, cols] + beta * refined).astype(np.float32)
    return out


def refine_edges(values: np.ndarray, guide: np.ndarray, **options) -> np.ndarray:
    """Edge-aware refinement of a full-resolution map by its colour frame (joint bilateral, edges only)."""
    values = _check_map(values)
    if np.shape(guide)[:2] != values.shape:
        raise ValueError(f"guide has shape {np.shape(guide)}, the map {values.shape}")
    return joint_bilateral_upsample(values, guide, **options)


def upsample_valid(valid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resampling of a validity mask to [height, width]."""
    valid = np.asarray(valid, dtype=bool)
    h, w = valid.shape
    rows = np.clip(np.round(_source_coords(height, h)).astype(int), 0, h - 1)
    cols = np.clip(np.round(_source_coords(width, w)).astype(int), 0, w - 1)
    return valid[rows][:, cols]


# --- smoothing --------------------------------------------------------------------------------


def median_smooth(values: np.ndarray, size: int = 3, *, wrap: bool = True) -> np.ndarray:
    """Median filter of odd `size` (3 or 5: OpenCV's float32 limit)."""
    import cv2

    values = _check_map(values)
    if size not in (3, 5):
        raise ValueError(f"median size must be 3 or 5, got {size}")
    return _apply_padded(values, size // 2, wrap, lambda p: cv2.medianBlur(p, size))


def bilateral_smooth(
    values: np.ndarray, diameter: int = 5, sigma_value: float | None = None, sigma_space: float = 2.0,
    *, wrap: bool = True,
) -> np.ndarray:
    """Edge-preserving bilateral filter; `sigma_value` defaults to 5% of the 98th-2nd percentile span."""
    import cv2

    values = _check_map(values)
    if diameter < 1 or diameter % 2 == 0:
        raise ValueError(f"diameter must be a positive odd number, got {diameter}")
    if sigma_value is None:
        low, high = np.percentile(values, [2.0, 98.0])
        sigma_value = max(float(high - low) * 0.05, 1e-6)
    return _apply_padded(
        values, diameter // 2, wrap, lambda p: cv2.bilateralFilter(p, diameter, sigma_value, sigma_space)
    )


def smooth(values: np.ndarray, method: Smoothing, *, wrap: bool = True) -> np.ndarray:
    """Apply the named smoothing (`none`, `median` 3x3, `bilateral` 5x5)."""
    if method == "none":
        return _check_map(values)
    if method == "median":
        return median_smooth(values, 3, wrap=wrap)
    if method == "bilateral":
        return bilateral_smooth(values, 5, wrap=wrap)
    raise ValueError(f"smoothing must be none, median or bilateral, got {method!r}")


# --- far field ---------------------------------------------------------------------------------


def mark_far_field(
    distance: np.ndarray, mask: np.ndarray, far: float, *, tolerance: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Sky and far field: pixels at or beyond `far` (within `tolerance`) take `far` and leave the mask.

    Returns (distance float32 with no NaN/Inf, mask bool); non-finite distances count as far.
    """
    distance = _check_map(distance, "distance")
    mask = _check_mask(mask, distance.shape, "distance")
    far_pixels = ~np.isfinite(distance) | (distance >= far * (1.0 - tolerance))
    out = np.where(far_pixels | ~mask, np.float32(far), distance).astype(np.float32)
    return out, mask & ~far_pixels


def disparity_to_distance(
    disparity: np.ndarray, near: float, far: float, *, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse metres -> (distance clamped to [near, far], mask); calibration.metric_to_distance."""
    from .calibration import metric_to_distance

    return metric_to_distance(disparity, near, far, valid=valid)
