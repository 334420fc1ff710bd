"""Stereo depth jumps moved onto the left plate's colour edges, one cut per jump and row.

After matching and `occlusion_edges`, a depth jump still lies a few pixels beside the plate's
edge, or is spread over a ramp: the matching window straddles it, the edge-aware smoothing
spreads it, and an occluded strip's end is known to a few pixels only. The plate knows
better: where a nearer object stands before a farther surface their colours change, and the
strongest colour step within a few pixels of a depth jump is the object's edge on most rows
(measured on the project's renders: 80-90% of the true jumps along the rows).

Along each row (the epipolar lines), the pixels within `reach` (columns and rows) of a
disparity jump (a ratio over 1 + BAND_JUMP within 2 * WINDOW_PX + 1 columns) whose nearest
settled neighbours left and right (reliable matches outside the band, within `radius`) differ
by more than JUMP form runs. A run between alike surfaces whose reliable disparities peak
beyond both by JUMP is a thin nearer object (a pole): it is split after its peak into two
runs, each between the peak's disparity and its side's surface. Each run is cut once, at the
plate's strongest colour step (RGB distance of neighbouring pixels, blurred a little) among
the run's pixel boundaries and its two ends: pixels left of the cut belong to the left
surface, pixels right of it to the right one. Left of a nearer surface, the unmatched pixels
of a run are the far surface's occluded strip (and the near rim the left-right check took
off), so the cut lies at most ERODED_PX into them.

A matched pixel on its surface's side of the divide (the geometric mean of the two
disparities) keeps its disparity, and so does an unmatched one on the farther surface or
beyond ERODED_PX of the cut; every other pixel of a run takes its surface's disparity and is
on the mask. A thin object is only narrowed, never widened: a bad match's spike looks alike.
Then the same along the columns (the tops and bottoms of objects), away from the rows' bands
and with jumps by JUMP over a few rows only (a floor's steep change of disparity from row to
row is none). Only the rows with a jump are worked on; columns wrap for ODS eyes (no seam at
0/360 degrees).
"""

from __future__ import annotations

import numpy as np

from ..parallel_rows import map_row_blocks, map_row_chunks
from ..postprocess.edges import JUMP, scaled_pixels

# Sizes in pixels of a 2048-wide eye (360 degrees), scaled with the pixels per turn.
REACH_PX, RADIUS_PX, WINDOW_PX, ERODED_PX = 4, 32, 3, 3
# Jumps along the columns are looked for over 2 * COLUMN_WINDOW_PX + 1 rows, by JUMP: a floor's steep
# change of disparity from row to row is none.
COLUMN_WINDOW_PX = 2
# A disparity ratio that marks a (smoothed) jump within the window; the run needs JUMP between its
# two surfaces.
BAND_JUMP = 0.12
# Disparities below this (pixels of a 2048-wide eye, about 10 m for ODS eyes 6.4 cm apart) count as
# this much: the far field's relative noise is large.
FLOOR_PX = 2.0
# The plate's Gaussian blur before its colour steps are taken (pixels; OpenCV's size for this sigma).
BLUR_SIGMA, BLUR_SIZE = 0.8, 7


def _row_jump_band(values: np.ndarray, reach: int, window: int, jump: float = BAND_JUMP) -> np.ndarray:
    """Bool: pixels within `reach` columns and rows of a ratio over 1 + `jump` within 2 * window + 1
    columns (the caller pads the columns)."""
    import cv2

    high = cv2.dilate(values, np.ones((1, 2 * window + 1), np.uint8))
    low = cv2.erode(values, np.ones((1, 2 * window + 1), np.uint8))
    jumps = (high > low * np.float32(1 + jump)).astype(np.uint8)
    return cv2.dilate(jumps, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0


def _surfaces(disparity: np.ndarray, settled: np.ndarray, rows: np.ndarray, cols: np.ndarray, run_start: np.ndarray,
              radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Per run (its pixels `rows`, `cols`, its first pixels at `run_start`): the disparity of the
    nearest settled pixel left of it and right of it in its row (NaN: none within `radius`)."""
    width = disparity.shape[1]
    run_end = np.append(run_start[1:], rows.size) - 1
    steps = np.arange(1, radius + 1)
    out = []
    for ends, direction in ((run_start, -1), (run_end, 1)):
        row, col = rows[ends][:, None], cols[ends][:, None] + direction * steps[None, :]
        inside = (col >= 0) & (col < width)
        hit = settled[row, np.clip(col, 0, width - 1)] & inside
        first = np.argmax(hit, axis=1)
        found = hit[np.arange(first.size), first]
        at = np.clip(cols[ends] + direction * (first + 1), 0, width - 1)
        out.append(np.where(found, disparity[rows[ends], at], np.nan))
    return out[0], out[1]


def _split_thin(own: np.ndarray, reliable: np.ndarray, left: np.ndarray, right: np.ndarray, new_run: np.ndarray,
                floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A thin nearer object: a run between alike surfaces whose reliable disparities peak beyond both
    by JUMP. It is split after its peak into two runs, each between the peak's disparity and its side's
    surface. Returns (left, right, new_run, thin) of the run pixels (lists as `_cut_rows` makes them)."""
    run_start = np.flatnonzero(new_run)
    run = np.cumsum(new_run) - 1
    peak = np.maximum.reduceat(np.where(reliable, own, -np.inf), run_start)
    with np.errstate(invalid="ignore"):
        outer = np.fmax(np.fmax(left, right), floor)[run_start]
        alike = outer <= np.fmax(np.fmin(left, right), floor)[run_start] * (1 + JUMP)
        thin = alike & (peak > outer * (1 + JUMP))
    if not thin.any():
        return left, right, new_run, np.zeros(own.size, bool)
    index = np.arange(own.size)
    at_peak = np.minimum.reduceat(np.where(reliable & (own == peak[run]), index, own.size), run_start)
    inside = thin[run]
    before = inside & (index <= at_peak[run])
    left, right, new_run = left.copy(), right.copy(), new_run.copy()
    right[before] = peak[run][before]
    left[inside & ~before] = peak[run][inside & ~before]
    after_peak = at_peak[thin] + 1
    after_peak = after_peak[after_peak < own.size]
    new_run[after_peak] = True
    return left, right, new_run, inside


Changes = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _cut_rows(disparity: np.ndarray, mask: np.ndarray, reliable: np.ndarray, band: np.ndarray, plate: np.ndarray,
              radius: int, eroded: int, floor: float, occlusion: bool) -> Changes:
    """The cut of every run along the rows (module docstring), `plate`: the blurred left eye; `occlusion`:
    the rows are the epipolar lines (occluded strips left of nearer surfaces). Returns the runs' pixels
    (rows, cols) and their (disparity, mask, changed)."""
    height, width = disparity.shape
    rows, cols = np.nonzero(band)
    nothing = (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0, bool))
    if rows.size == 0:
        return nothing
    # Runs: consecutive band pixels of a row (nonzero lists them row by row, column by column).
    pixels = rows.astype(np.int64) * (width + 1) + cols
    new_run = np.concatenate([[True], np.diff(pixels) != 1])
    left, right = _surfaces(disparity, reliable & ~band, rows, cols, np.flatnonzero(new_run), radius)
    run = np.cumsum(new_run) - 1
    left, right = left[run], right[run]
    left, right, new_run, thin = _split_thin(disparity[rows, cols], reliable[rows, cols], left, right, new_run, floor)
    with np.errstate(invalid="ignore"):
        spread = np.fmax(np.fmax(left, right), floor) > np.fmax(np.fmin(left, right), floor) * (1 + JUMP)
    if not spread.any():
        return nothing
    new_run = (new_run | np.concatenate([[True], ~spread[:-1]]))[spread]
    rows, cols, left, right, pixels, thin = (a[spread] for a in (rows, cols, left, right, pixels, thin))
    new_run |= np.concatenate([[True], np.diff(pixels) != 1])
    run_start = np.flatnonzero(new_run)  # each run's first pixel in the lists
    run = np.cumsum(new_run) - 1
    starts = pixels[run_start]
    # Boundary k of a run: between its pixels k - 1 and k, from its start to one past its end.
    lengths = np.diff(np.append(run_start, pixels.size)) + 1
    run_of = np.repeat(np.arange(run_start.size), lengths)
    first = np.cumsum(lengths) - lengths
    offset = np.arange(lengths.sum()) - np.repeat(first, lengths)
    b_rows, b_cols = rows[run_start][run_of], cols[run_start][run_of] + offset
    inside = (b_cols >= 1) & (b_cols < width)
    step = plate[b_rows, np.clip(b_cols, 0, width - 1)] - plate[b_rows, np.clip(b_cols - 1, 0, width - 1)]
    strength = np.where(inside, np.sqrt((step * step).sum(-1)), 0.0)
    # Left of a nearer surface, at most `eroded` pixels into the run's unmatched pixels.
    last_hole = np.maximum.reduceat(np.where(mask[rows, cols], -1, cols), run_start)
    nearer_right = right[run_start] > left[run_start]
    barred = nearer_right[run_of] & (last_hole[run_of] >= 0) & (b_cols < last_hole[run_of] + 1 - eroded)
    strength = np.where(barred & occlusion, -1.0, strength)
    best = np.maximum.reduceat(strength, first)
    candidate = np.where(strength >= best[run_of], offset, np.iinfo(np.int64).max)
    cut = starts + np.minimum.reduceat(candidate, first)  # the first pixel of the right surface
    on_left = pixels < cut[run]
    side, other = np.where(on_left, left, right), np.where(on_left, right, left)
    own, matched = disparity[rows, cols], mask[rows, cols]
    divide = np.sqrt(np.maximum(side, floor) * np.maximum(other, floor))
    # An unmatched pixel takes the nearer surface only next to the cut (a rim the left-right check took off).
    rim = np.abs(pixels - cut[run] + 0.5) <= eroded
    keep = (matched & ((own - divide) * (side - divide) > 0)) | (~matched & ((side < other) | ~rim))
    # A thin object is only narrowed (its cut ends are the least sure: a spike of a bad match looks alike).
    keep |= thin & (~matched | (own < divide))
    return rows, cols, np.where(keep, own, side).astype(np.float32), np.where(keep, matched, True), ~keep


def _blurred_plate(rgb: np.ndarray, wrap: bool) -> np.ndarray:
    """The plate's Gaussian blur (BLUR_SIGMA, BLUR_SIZE taps), float32 [H, W, 3]: columns beyond its sides
    wrapped (`wrap`) or repeated, rows reflected; blocks of rows on the worker threads."""
    import cv2

    rgb = np.ascontiguousarray(rgb[..., :3], np.float32)
    half = BLUR_SIZE // 2
    out = map_row_blocks(lambda rows: cv2.GaussianBlur(rgb[rows], (BLUR_SIZE, BLUR_SIZE), BLUR_SIGMA), rgb.shape[0], half)
    # The columns within a kernel of the sides, again from strips that hold what lies beyond them.
    outside = 2 * half
    left = rgb[:, -outside:] if wrap else np.repeat(rgb[:, :1], outside, axis=1)
    right = rgb[:, :outside] if wrap else np.repeat(rgb[:, -1:], outside, axis=1)
    strip = np.concatenate([left, rgb[:, :outside], rgb[:, -outside:], right], axis=1)
    blurred = cv2.GaussianBlur(strip, (BLUR_SIZE, BLUR_SIZE), BLUR_SIGMA)
    out[:, :half] = blurred[:, outside:outside + half]
    out[:, -half:] = blurred[:, 3 * outside - half:3 * outside]
    return out


def snap_to_colour_edges(disparity: np.ndarray, mask: np.ndarray, rgb: np.ndarray, *, wrap: bool,
                         reliable: np.ndarray | None = None, rows: np.ndarray | None = None,
                         reach: int | None = None, radius: int | None = None,
                         turn: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(disparity, mask, changed) of the left eye (pixels, col_left - col_right) with each depth jump
    cut at the plate's strongest colour step near it (module docstring). `mask`: matched pixels;
    `reliable`: those whose disparity may stand for a surface (default `mask`); `rgb`: the left eye,
    float32 [H, W, 3] in 0..1; `rows`: bool [H], the rows stereo measures (None: all); `turn`: pixels
    per 360 degrees along the rows, which the sizes scale with (default: the width, an equirect eye);
    `changed`: the pixels that took a surface's disparity."""
    import cv2

    disparity = np.asarray(disparity, np.float32)
    height, width = disparity.shape
    turn = width if turn is None else int(turn)
    reach = scaled_pixels(REACH_PX, turn) if reach is None else int(reach)
    radius = scaled_pixels(RADIUS_PX, turn) if radius is None else int(radius)
    window, eroded = scaled_pixels(WINDOW_PX, turn), scaled_pixels(ERODED_PX, turn)
    floor = np.float32(FLOOR_PX * turn / 2048)
    reliable = np.asarray(mask if reliable is None else reliable, bool)
    pad = radius + reach + window + 2

    def padded(values: np.ndarray) -> np.ndarray:
        if wrap:
            return np.concatenate([values[:, -pad:], values, values[:, :pad]], axis=1)
        return np.pad(values, [(0, 0), (pad, pad)] + [(0, 0)] * (values.ndim - 2), mode="edge")

    band = map_row_blocks(lambda block: _row_jump_band(padded(np.maximum(disparity[block], floor)), reach, window),
                          height, reach)
    if rows is not None:  # not the jump from the measured rows to the unmeasured ones
        inside = np.convolve(~np.asarray(rows, bool), np.ones(2 * reach + 5), mode="same") == 0
        band &= inside[:, None]
    out, out_mask, changed = disparity.copy(), np.asarray(mask, bool).copy(), np.zeros((height, width), bool)
    plate = _blurred_plate(rgb, wrap)
    inner = slice(pad, pad + width)

    def cut_rows(chunk: np.ndarray) -> Changes:
        return _cut_rows(padded(disparity[chunk]), padded(out_mask[chunk]), padded(reliable[chunk]), band[chunk],
                         padded(plate[chunk]), radius, eroded, floor, occlusion=True)

    busy = np.flatnonzero(band[:, inner].any(axis=1))  # the rows with a jump
    for chunk, (r, c, values, matched, cut) in map_row_chunks(cut_rows, busy):
        ours = (c >= pad) & (c < pad + width)
        r, c = chunk[r[ours]], c[ours] - pad
        out[r, c], out_mask[r, c], changed[r, c] = values[ours], matched[ours], cut[ours]
    # The columns: the tops and bottoms of objects, where no jump along the rows is near.
    column = np.ones((2 * scaled_pixels(COLUMN_WINDOW_PX, turn) + 1, 1), np.uint8)

    def column_band(block: slice) -> np.ndarray:
        floored = np.maximum(out[block], floor)
        jumps = (cv2.dilate(floored, column) > cv2.erode(floored, column) * np.float32(1 + JUMP)).view(np.uint8)
        return cv2.dilate(jumps, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0

    across = map_row_blocks(column_band, height, reach + column.shape[0] // 2) & ~band[:, inner]
    if rows is not None:
        across &= inside[:, None]
    settled = (reliable | changed) & out_mask

    def cut_columns(chunk: np.ndarray) -> Changes:  # views of the columns from the chunk's first to its last
        span = slice(chunk[0], chunk[-1] + 1)
        return _cut_rows(out[:, span].T, out_mask[:, span].T, settled[:, span].T, np.ascontiguousarray(across[:, span].T),
                         plate[:, span].transpose(1, 0, 2), radius, eroded, floor, occlusion=False)

    for chunk, (c, r, values, matched, cut) in map_row_chunks(cut_columns, np.flatnonzero(across.any(axis=0))):
        c = c + chunk[0]
        out[r, c], out_mask[r, c], changed[r, c] = values, matched, changed[r, c] | cut
    return out, out_mask, changed
