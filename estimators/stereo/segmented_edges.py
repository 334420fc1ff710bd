"""Stereo depth jumps settled in 2D by a two-surface colour segmentation of the left plate (GrabCut).

The colour cut (`colour_edges`) decides each row's jump on its own, a few pixels around where
the match put it. Where the match is off by more (a low-texture rim of a nearer object matched
to the surface behind it, a far surface fattened into a near one), or where a texture step
outshines the object's edge on a row, that cut lands in the wrong place, on runs of rows.
An object's silhouette is one curve across rows, and its two sides differ in colour as a whole:
that is what a segmentation knows and a row does not.

Around every remaining disparity jump (a ratio over 1 + JUMP within 2 * WINDOW_PX + 1 columns
or 3 rows; disparities below FLOOR_PX count as that much, the far field's noise is no jump),
the pixels within REACH_PX form the band. Each pixel has a side, near or far of the divide of
the nearest jump: the geometric mean of the largest and smallest matched disparity within
REACH_PX + WINDOW_PX + 1 of it (unmatched pixels are written at the far limit: far). The band is
worked on in tiles of TILE_PX, each cropped to its band with MARGIN_PX of context (a crop less
than MIN_VALID matched is left as it is): pixels outside the band are sure of their side, pixels
in it start on their current side, and OpenCV's GrabCut (a colour mixture per side, learnt from
every SAMPLE_STEP-th pixel, and a contrast-sensitive smoothness over the 8-neighbourhood) settles
them in one graph cut. A pixel that changes side takes the disparity of the nearest matched
pixel of its crop that kept that side, and is on the mask; a near run narrower than THIN_PX
along its row (a pole) loses no pixel. Sizes are pixels of a 2048-wide eye (360 degrees), scaled
with the pixels per turn; columns wrap for ODS eyes (no seam at 0/360 degrees).

With it the stereo edge step takes 14-20% of a 4K frame on two cores, against 8-11% without
(GrabCut is most of the difference; the tiles run on threads), so it is the stereo part of
`--edges snap`, not of the default. Only the crops' pixels get a side (the rest is never read).
"""

from __future__ import annotations

import numpy as np

from ..parallel_rows import map_threads
from ..postprocess.edges import JUMP, scaled_pixels

REACH_PX, WINDOW_PX, TILE_PX, MARGIN_PX = 8, 3, 128, 16
# Disparities below this (pixels of a 2048-wide eye, about 20 m for ODS eyes 6.4 cm apart) count
# as this much.
FLOOR_PX = 1.0
# A tile is segmented only with this many sure pixels on each side (GrabCut's colour mixtures need them).
MIN_SURE = 20
# GrabCut's colour mixtures are learnt from every SAMPLE_STEP-th pixel (row and column) of a crop, from a
# k-means++ start seeded with SEED: the same result on every run and thread.
SAMPLE_STEP, SEED = 2, 1
# A crop is segmented only where this share of its pixels is matched: where more is not (sky, bare ground)
# the sides are the matcher's noise, and GrabCut spreads it over colour patches.
MIN_VALID = 0.7
# A near run narrower than this along its row (a pole) keeps its pixels: its own colours are too few for
# GrabCut's near mixture, which takes its shaded side for the surface behind.
THIN_PX = 16
# A tile's top-left corner (rows, padded columns) and its crop.
TileArea = tuple[tuple[int, int], tuple[slice, slice]]


def _extremes(matched_high: np.ndarray, matched_low: np.ndarray,
              kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(high, low, jumps): the largest and smallest matched value within `kernel` around each pixel, and
    where they differ by a ratio over 1 + JUMP (False where no matched pixel is near). `matched_high`,
    `matched_low`: the log disparity with unmatched pixels at -inf and +inf (_unmatched_at_infinity)."""
    import cv2

    high, low = cv2.dilate(matched_high, kernel), cv2.erode(matched_low, kernel)
    with np.errstate(invalid="ignore", over="ignore"):  # no matched pixel in the window: +-inf
        jumps = np.isfinite(high) & np.isfinite(low) & (high - low > np.float32(np.log1p(JUMP)))
    return high, low, jumps


def _unmatched_at_infinity(log_disparity: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 log disparity with the unmatched pixels at -inf (for window maxima) and at +inf (minima)."""
    return (np.where(valid, log_disparity, -np.inf).astype(np.float32),
            np.where(valid, log_disparity, np.inf).astype(np.float32))


def _band(matched: tuple[np.ndarray, np.ndarray], window: int, reach: int) -> np.ndarray:
    """Bool: within `reach` of a jump by JUMP over 2 * window + 1 columns or 3 rows (matched pixels only;
    `matched` from _unmatched_at_infinity)."""
    import cv2

    jumps = (_extremes(*matched, np.ones((1, 2 * window + 1), np.uint8))[2]
             | _extremes(*matched, np.ones((3, 1), np.uint8))[2])
    return cv2.dilate(jumps.view(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0


def _sides(log_disparity: np.ndarray, matched: tuple[np.ndarray, np.ndarray], radius: int,
           needed: np.ndarray) -> np.ndarray:
    """Bool, at the `needed` pixels (False elsewhere): near of the divide of the nearest jump (the mean log
    of the largest and smallest matched disparity within `radius` of a pixel where they differ by JUMP)."""
    high, low, jumps = _extremes(*matched, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
    near = np.zeros(log_disparity.shape, bool)
    if not jumps.any():
        return near
    with np.errstate(invalid="ignore"):  # +inf + -inf where no matched pixel is near (not a jump)
        divide = np.where(jumps, (high + low) / 2, 0).astype(np.float32)
    near[needed] = log_disparity[needed] > _nearest_values(divide, jumps, needed)
    return near


def _run_lengths(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per pixel of the `rows` (bool [H]; 0 on the others), the length of the run of equal values along its
    row that it belongs to."""
    picked = values[rows]
    starts = np.ones(picked.shape, bool)
    starts[:, 1:] = picked[:, 1:] != picked[:, :-1]
    run = np.cumsum(starts.ravel()) - 1
    lengths = np.zeros(values.shape, np.int64)
    lengths[rows] = np.bincount(run)[run].reshape(picked.shape)
    return lengths


def _segment_tile(plate: np.ndarray, near: np.ndarray, band: np.ndarray) -> np.ndarray | None:
    """GrabCut's near side of a crop (None: too few sure pixels of a side to model it): colour mixtures
    learnt from every SAMPLE_STEP-th pixel of each side, then one graph cut of the whole crop."""
    import cv2

    sure_near, sure_far = near & ~band, ~near & ~band
    if np.count_nonzero(sure_near) < MIN_SURE or np.count_nonzero(sure_far) < MIN_SURE:
        return None
    labels = np.where(band, np.where(near, cv2.GC_PR_FGD, cv2.GC_PR_BGD),
                      np.where(near, cv2.GC_FGD, cv2.GC_BGD)).astype(np.uint8)
    sampled = np.ascontiguousarray(labels[::SAMPLE_STEP, ::SAMPLE_STEP])
    sampled_near = np.count_nonzero(sampled & 1)  # GC_FGD and GC_PR_FGD are the odd labels
    if min(sampled_near, sampled.size - sampled_near) < MIN_SURE // SAMPLE_STEP**2:  # k-means needs 5 a side
        return None
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(SEED)  # GrabCut seeds its colour mixtures by k-means++ from this thread's generator
    cv2.grabCut(np.ascontiguousarray(plate[::SAMPLE_STEP, ::SAMPLE_STEP]), sampled, None, *models, 0,
                cv2.GC_INIT_WITH_MASK)
    cv2.grabCut(plate, labels, None, *models, 1, cv2.GC_EVAL_FREEZE_MODEL)
    return (labels & 1).astype(bool)


def _nearest_values(values: np.ndarray, source: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """values at the nearest `source` pixel of each `targets` pixel (Euclidean distance)."""
    import cv2

    _, labels = cv2.distanceTransformWithLabels((~source).view(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(source)  # DIST_LABEL_PIXEL numbers the source pixels in scan order from 1
    index = labels[targets] - 1
    return values[ys[index], xs[index]]


def _tile_areas(band: np.ndarray, pad: int, width: int, tile: int, margin: int) -> list[TileArea]:
    """Per `tile`-sized tile of the eye's columns (from `pad`, `width` wide) holding `band` pixels: its
    top-left corner and its crop, the band's extent within it and `margin` more."""
    height, areas = band.shape[0], []
    for top in range(0, height, tile):
        for left in range(pad, pad + width, tile):
            ys, xs = np.nonzero(band[top:top + tile, left:min(left + tile, pad + width)])
            if ys.size:
                y0, y1 = max(0, top + ys.min() - margin), min(height, top + ys.max() + 1 + margin)
                x0, x1 = max(0, left + xs.min() - margin), min(band.shape[1], left + xs.max() + 1 + margin)
                areas.append(((top, left), np.s_[y0:y1, x0:x1]))
    return areas


def segment_jumps(disparity: np.ndarray, mask: np.ndarray, rgb: np.ndarray, *, wrap: bool,
                  reliable: np.ndarray | None = None, rows: np.ndarray | None = None,
                  turn: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(disparity, mask, changed) of the left eye (pixels, col_left - col_right) with the pixels near its
    jumps put on the side of the plate's two-surface segmentation (module docstring). `mask`: matched
    pixels; `reliable`: those whose disparity may stand for a surface (default `mask`; the others are
    far); `rgb`: the left eye, float32 [H, W, 3] in 0..1; `rows`: bool [H], the rows stereo measures
    (None: all); `turn`: pixels per 360 degrees along the rows (default: the width, an equirect eye);
    `changed`: the pixels that changed side."""
    disparity, mask = np.asarray(disparity, np.float32), np.asarray(mask, bool)
    height, width = disparity.shape
    turn = width if turn is None else int(turn)
    reach, window = scaled_pixels(REACH_PX, turn), scaled_pixels(WINDOW_PX, turn)
    tile, margin = scaled_pixels(TILE_PX, turn), scaled_pixels(MARGIN_PX, turn)
    pad = reach + window + 1 + margin if wrap else 0

    def padded(values: np.ndarray) -> np.ndarray:
        return np.concatenate([values[:, width - pad:], values, values[:, :pad]], axis=1) if pad else values

    wide, valid = padded(disparity), padded(mask if reliable is None else mask & np.asarray(reliable, bool))
    floor = np.float32(FLOOR_PX * turn / 2048)
    valid &= np.isfinite(wide)
    log_disparity = np.log(np.where(valid, np.maximum(wide, floor), floor))
    matched = _unmatched_at_infinity(log_disparity, valid)
    band = _band(matched, window, reach)
    if rows is not None:  # not the jump from the measured rows to the unmeasured ones
        inside = np.convolve(~np.asarray(rows, bool), np.ones(2 * reach + 5), mode="same") == 0
        band &= inside[:, None]
    band[:, :pad], band[:, pad + width:] = False, False  # each pixel is decided once, in its own column
    areas = _tile_areas(band, pad, width, tile, margin)
    if not areas:  # no jump to settle
        return disparity.copy(), mask.copy(), np.zeros((height, width), bool)
    needed = np.zeros(band.shape, bool)  # the crops' pixels: only their sides are read
    for _, area in areas:
        needed[area] = True
    near = _sides(log_disparity, matched, reach + window + 1, needed)
    thin = _run_lengths(near, needed.any(axis=1)) < scaled_pixels(THIN_PX, turn)
    rgb = np.asarray(rgb, np.float32)

    def settle(tile_area: TileArea) -> tuple[tuple[int, int], np.ndarray, np.ndarray] | None:
        (top, left), area = tile_area
        y0, x0 = area[0].start, area[1].start
        tile_band, tile_near = band[area], near[area]
        if np.count_nonzero(valid[area]) < MIN_VALID * tile_band.size:
            return None
        columns = (np.arange(area[1].start, area[1].stop) - pad) % width
        plate = np.round(np.clip(rgb[area[0], columns], 0, 1) * 255).astype(np.uint8)
        new_near = _segment_tile(plate, tile_near, tile_band)
        if new_near is None:
            return None
        flips = tile_band & (new_near != tile_near) & ~(thin[area] & tile_near)
        core = np.zeros_like(flips)
        core[max(0, top - y0):top - y0 + tile, max(0, left - x0):left - x0 + tile] = True
        flips &= core
        values = np.zeros(flips.shape, np.float32)
        kept = valid[area] & ~flips
        for side in (True, False):
            targets, source = flips & (new_near == side), kept & (tile_near == side)
            if targets.any() and source.any():
                values[targets] = _nearest_values(wide[area], source, targets)
            else:
                flips &= ~targets
        return (y0, x0), flips, values

    out, out_mask, changed = disparity.copy(), mask.copy(), np.zeros((height, width), bool)
    for result in map_threads(settle, areas):
        if result is None:
            continue
        (y0, x0), flips, values = result
        ys, xs = np.nonzero(flips)
        rows_at, cols_at = ys + y0, (xs + x0 - pad) % width
        out[rows_at, cols_at], out_mask[rows_at, cols_at], changed[rows_at, cols_at] = values[ys, xs], True, True
    return out, out_mask, changed
