"""Pixels at infinity (sky) in a 360 frame, from the estimator's own output and the picture.

A relative estimator gives infinity its disparity floor (the affine map of zero), a
metric one its ceiling. Disparity alone cannot tell the sky from ground a few hundred
metres away, so `find_sky` adds what the picture says, without any other network:

1. candidates: fused disparity within `FLOOR_BAND` of the frame's range above its floor;
2. smooth colour: the sky has no texture edges (the horizon and silhouettes do);
3. connected to the top of the frame through such pixels (columns wrap: 0 and W-1 are
   neighbours), and above `LOWEST_ELEVATION_DEG`, so a far plain field below the horizon
   edge stays ground;
4. grown across the thin rims that the smoothing test leaves at silhouettes and at the
   horizon, where a candidate pixel has the colour of the sky next to it.

A picture smooth almost everywhere (`FLAT_SMOOTH_SHARE`) whose views the estimator
sees as flat (`is_flat`) is all sky. Everything is
computed at most `WORK_HEIGHT` rows high and brought back to the frame.
"""

from __future__ import annotations

import numpy as np

FLOOR_BAND = 0.04  # of the frame's disparity range (0.5th..99.5th percentile)
SMOOTH_GRADIENT = 0.03  # largest colour step per work pixel (0..1 colour) still "smooth"
SKY_COLOUR_TOLERANCE = 0.06  # how far a rim pixel's colour may be from the sky beside it
LOWEST_ELEVATION_DEG = -15.0  # below this no sky (a handheld camera tilts a few degrees)
TOP_ROWS_DEG = 30.0  # seeds: candidates within this many degrees of the zenith
RIM_STEPS = 3
# A picture smooth almost everywhere to which the estimator gives flat maps has no depth to
# find: it is all sky (looking straight up, a flat colour, fog).
FLAT_SMOOTH_SHARE = 0.98
FLAT_OUTPUT = 0.05  # a map whose 0.5..99.5th percentile range is under this share of its level
WORK_HEIGHT = 512
METRIC_CEILING = 0.97  # a metric output at or above this share of the model's range: infinity


def _pad_wrap(image: np.ndarray, pad: int) -> np.ndarray:
    return np.concatenate([image[:, -pad:], image, image[:, :pad]], axis=1)


def _smooth(rgb: np.ndarray) -> np.ndarray:
    """Pixels whose colour changes little to any neighbour (wrap-aware), after a light blur."""
    import cv2

    padded = _pad_wrap(rgb, 2)
    blurred = cv2.GaussianBlur(padded, (3, 3), 0.8)
    step = np.zeros(padded.shape[:2], np.float32)
    for axis in (0, 1):
        difference = np.abs(np.diff(blurred, axis=axis)).max(axis=2)
        if axis == 0:
            step[1:] = np.maximum(step[1:], difference)
            step[:-1] = np.maximum(step[:-1], difference)
        else:
            step[:, 1:] = np.maximum(step[:, 1:], difference)
            step[:, :-1] = np.maximum(step[:, :-1], difference)
    return (step < SMOOTH_GRADIENT)[:, 2:-2]


def _connected_to_top(allowed: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The pixels of `allowed` connected (4-neighbours, columns wrap) to a seed pixel."""
    import cv2

    width = allowed.shape[1]
    tiled = np.concatenate([allowed, allowed], axis=1).astype(np.uint8)
    count, labels = cv2.connectedComponents(tiled, connectivity=4)
    seeded = np.zeros(count, bool)
    seeded[np.unique(labels[:, :width][seeds & allowed])] = True
    seeded[np.unique(labels[:, width:][seeds & allowed])] = True
    seeded[0] = False
    # A component crossing the seam has one label in the tiled picture; fold both copies back.
    reached = seeded[labels]
    return reached[:, :width] | reached[:, width:]


def _grow_rims(sky: np.ndarray, candidates: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Add candidate pixels next to the sky whose colour matches the sky's beside them."""
    import cv2

    kernel = np.ones((3, 3), np.uint8)
    for _ in range(RIM_STEPS):
        weight = cv2.blur(_pad_wrap(sky.astype(np.float32), 3), (5, 5))[:, 3:-3]
        colour = cv2.blur(_pad_wrap(rgb * sky[..., None], 3), (5, 5))[:, 3:-3]
        sky_colour = colour / np.maximum(weight, 1e-6)[..., None]
        ring = cv2.dilate(_pad_wrap(sky.astype(np.uint8), 1), kernel)[:, 1:-1].astype(bool) & ~sky
        close = np.abs(rgb - sky_colour).max(axis=2) < SKY_COLOUR_TOLERANCE
        added = ring & candidates & close & (weight > 0)
        if not added.any():
            break
        sky = sky | added
    return sky


def find_sky(disparity: np.ndarray, valid: np.ndarray, rgb: np.ndarray, flat_output: bool = False) -> np.ndarray:
    """Bool [H, W]: the pixels at infinity of an equirect frame (module docstring).

    `disparity`: the frame's fused inverse distance (relative or metric; larger is nearer),
    `valid`: where it is defined; `rgb`: the frame, float 0..1; `flat_output`: the
    estimator gave every view a flat map (`is_flat`): with a picture smooth almost
    everywhere, the whole frame is at infinity.
    """
    import cv2

    height, width = disparity.shape
    if not valid.any():
        return np.zeros((height, width), bool)
    scale = min(1.0, WORK_HEIGHT / height)
    size = (max(2, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(np.where(valid, disparity, np.nan).astype(np.float32), size, interpolation=cv2.INTER_NEAREST)
    picture = cv2.resize(np.asarray(rgb, np.float32), size, interpolation=cv2.INTER_AREA)
    known = np.isfinite(small)
    low, high = np.percentile(small[known], [0.5, 99.5])
    smooth = _smooth(picture)
    if flat_output and smooth.mean() >= FLAT_SMOOTH_SHARE:  # nothing to see depth in (sky, fog)
        return np.ones((height, width), bool) & valid
    candidates = known & (small <= low + FLOOR_BAND * max(float(high - low), 1e-12))
    sky = connected_sky(candidates, picture)
    if scale == 1.0:
        return sky
    return cv2.resize(sky.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def connected_sky(candidates: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Smooth candidate pixels connected to the top of the frame, grown across their rims.

    Steps 2 to 4 of the module docstring on a frame of any size (callers keep it small).
    """
    height = candidates.shape[0]
    elevation = 90.0 - 180.0 * (np.arange(height) + 0.5) / height
    candidates = candidates & (elevation >= LOWEST_ELEVATION_DEG)[:, None]
    allowed = candidates & _smooth(rgb)
    seeds = np.zeros_like(allowed)
    seeds[elevation >= 90.0 - TOP_ROWS_DEG] = True
    return _grow_rims(_connected_to_top(allowed, seeds), candidates, rgb)


def is_flat(maps) -> bool:
    """True when every map's 0.5..99.5th percentile range is under FLAT_OUTPUT of its level."""
    for values in maps:
        finite = np.asarray(values)[np.isfinite(values)]
        if finite.size == 0:
            continue
        low, high = np.percentile(finite, [0.5, 99.5])
        if high - low > FLAT_OUTPUT * max(abs(float(low)), abs(float(high)), 1e-12):
            return False
    return True


def beyond_range(depth: np.ndarray, max_depth: float | None) -> np.ndarray:
    """Bool: metric output at infinity (not finite, not positive, or at the model's ceiling)."""
    depth = np.asarray(depth)
    out = ~np.isfinite(depth) | (depth <= 0)
    if max_depth:
        out |= depth >= METRIC_CEILING * float(max_depth)
    return out


def sample_mask(mask: np.ndarray, view) -> np.ndarray:
    """Bool [h, w]: an equirect mask seen through a view (nearest pixel)."""
    from .equirect import direction_to_pixel

    height, width = mask.shape
    rows, cols = direction_to_pixel(view.rays(), height, width)
    rows = np.clip(np.floor(rows).astype(np.int64), 0, height - 1)
    cols = np.mod(np.floor(cols).astype(np.int64), width)
    return mask[rows, cols]
