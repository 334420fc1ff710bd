"""Occlusion edges of stereo depth on the plate's edges: foreground fattening undone near depth jumps.

A block matcher's window that straddles a depth edge is dominated by the more textured,
usually nearer, side: background pixels within half a window of a foreground object take its
disparity (foreground fattening), and edge-aware smoothing guided by a low-contrast plate
does not take it back. Near each disparity jump (`postprocess.edges.jump_band`, within
`reach` of it) every pixel is decided again between the surfaces around it, known from the
matched pixels outside the band nearest to it left and right in its row (within `radius`):

- Occlusion geometry, on the left side of a nearer surface. The left eye sees nearer things
  further right than the right eye, so left of a surface at disparity ``d_n`` standing before
  one at ``d_f`` a strip of ``d_n - d_f`` columns of the far surface is hidden from the right
  eye. Its left end is the last matched far pixel of the row, so the occlusion edge lies
  ``d_n - d_f`` columns to its right: pixels left of it are the far surface (not matched: off
  the mask), pixels right of it the near one.
- Elsewhere (the right side of a nearer surface), each of those depths is
  matched again: the squared differences of the eyes over the pixel's own column (HALF_PX
  above and below) and over the better of two one-sided windows (the pixel on the window's
  left or right side, SIDE_PX long, so that one lies on its own surface); the cheaper
  candidate wins.

A pixel keeps its own disparity where the winner is within KEEP of it. Sizes are pixels of a
2048-wide eye, scaled with the width. Columns wrap for ODS eyes (no seam at 0/360 degrees).
"""

from __future__ import annotations

import numpy as np

from ..postprocess.edges import JUMP, jump_band, scaled_pixels

REACH_PX, RADIUS_PX = 5, 32
# Jumps are looked for over 2 * WINDOW_PX + 1 columns: the matcher's smoothing spreads them.
WINDOW_PX = 2
# Disparities below this count as this much when looking for jumps: far surfaces (about 10 m in a
# 2048-wide ODS eye) fatten by little, and their relative noise is large.
FLOOR_PX = 4.0
# A one-sided window: SIDE_PX along the side it extends to, 2 * HALF_PX + 1 across.
SIDE_PX, HALF_PX = 5, 2
CHUNK = 65536
# Columns of the far surface left unmatched beyond the occluded strip (the matcher's window).
ERODED_PX = 3
# A re-matched pixel is matched (on the mask) below MATCHED_COST times the median cost of the
# matched pixels away from jumps, and unmatched (occluded) above OCCLUDED_COST times it.
MATCHED_COST, OCCLUDED_COST = 20.0, 1e9
# The least typical cost: a squared difference of about one 8-bit level per channel.
NOISE_COST = 3 * (1 / 255) ** 2
# A pixel keeps its own disparity when the chosen candidate is within this share of it.
KEEP = 0.05


def _nearest_along_rows(values: np.ndarray, settled: np.ndarray, limit: int,
                        wrap: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Left then right: per pixel, the value of the nearest settled pixel in its row and how many
    columns away it is (value NaN where there is none within `limit`); columns wrap when `wrap`."""
    height, width = values.shape
    pad = min(limit, width) if wrap else 0
    if pad:
        values, settled = (np.concatenate([a[:, -pad:], a, a[:, :pad]], axis=1) for a in (values, settled))
    columns = np.broadcast_to(np.arange(values.shape[1], dtype=np.int32), values.shape)
    found = []
    for right in (False, True):
        if right:
            nearest = np.minimum.accumulate(np.where(settled, columns, 10 * width)[:, ::-1], axis=1)[:, ::-1]
        else:
            nearest = np.maximum.accumulate(np.where(settled, columns, -10 * width), axis=1)
        gap = np.abs(nearest - columns)
        picked = np.take_along_axis(values, np.clip(nearest, 0, values.shape[1] - 1), axis=1)
        found.append((np.where(gap <= limit, picked, np.nan)[:, pad:pad + width], gap[:, pad:pad + width]))
    return found


def _candidates(disparity: np.ndarray, settled: np.ndarray, limit: int, wrap: bool) -> np.ndarray:
    """[2, H, W] disparities of the nearest settled pixel left and right in the row (NaN: none within
    `limit`)."""
    return np.stack([values for values, _ in _nearest_along_rows(disparity, settled, limit, wrap)])


def _strip_gap(mask: np.ndarray, limit: int, wrap: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the columns from the last matched pixel before the nearest unmatched run at or left
    of it (the left end of an occluded strip), and from that run's nearest pixel; large where none."""
    height, width = mask.shape
    pad = min(limit, width) if wrap else 0
    if pad:
        mask = np.concatenate([mask[:, -pad:], mask, mask[:, :pad]], axis=1)
    columns = np.broadcast_to(np.arange(mask.shape[1], dtype=np.int32), mask.shape)
    unmatched = np.maximum.accumulate(np.where(mask, -10 * width, columns), axis=1)
    matched = np.maximum.accumulate(np.where(mask, columns, -10 * width), axis=1)
    before = np.take_along_axis(matched, np.clip(unmatched, 0, mask.shape[1] - 1), axis=1)
    before = np.where(unmatched >= 0, before, -10 * width)
    return (columns - before)[:, pad:pad + width], (columns - unmatched)[:, pad:pad + width]


class _Patches:
    """The eyes (padded, flattened to [pixels, C]) and, per pixel asked about, the flat indices of the
    patch the cost's three windows share (2 HALF_PX + 1 rows, 2 SIDE_PX - 1 columns) and the left
    eye's values there, gathered once for every candidate disparity."""

    def __init__(self, eyes: list[np.ndarray], rows: np.ndarray, cols: np.ndarray, pad: tuple[int, int]):
        left, right = eyes
        step = left.shape[1]
        self.right = right.reshape(-1, right.shape[2])
        r = rows[:, None, None] + pad[0] + np.arange(-HALF_PX, HALF_PX + 1)[None, :, None]
        c = cols[:, None, None] + pad[1] + np.arange(-(SIDE_PX - 1), SIDE_PX)[None, None, :]
        self.index = r * step + c
        self.left = np.take(left.reshape(-1, left.shape[2]), self.index, axis=0)

    def cost(self, shift: np.ndarray, pick: np.ndarray | None = None) -> np.ndarray:
        """Per pixel (of `pick`): the mean of its own column's cost and the least one-sided window's
        (module docstring), the right eye taken `shift` pixels to the left (linear interpolation).
        Each window's mean reads its part of the patch in the order of its own offsets (along the
        side, then across)."""
        index, left = (self.index, self.left) if pick is None else (self.index[pick], self.left[pick])
        whole = np.floor(shift).astype(np.int64)
        fraction = (shift - whole).astype(np.float32)[:, None, None, None]
        target = index - whole[:, None, None]
        sampled = np.take(self.right, target, axis=0) * (1 - fraction) + np.take(self.right, target - 1, axis=0) * fraction
        squared = ((left - sampled) ** 2).sum(-1)  # [N, across, along]
        centre, count = SIDE_PX - 1, len(shift)
        best = np.full(count, np.inf, np.float32)
        for side in (squared[:, :, centre:], squared[:, :, centre::-1]):  # the pixel on the window's left, right
            best = np.minimum(best, side.transpose(0, 2, 1).reshape(count, -1).mean(-1))
        return 0.5 * (best + squared[:, :, centre].mean(-1))


def _pad_eyes(left: np.ndarray, right: np.ndarray, pad: tuple[int, int], wrap: bool) -> list[np.ndarray]:
    mode = "wrap" if wrap else "edge"
    return [np.pad(np.pad(eye, ((pad[0], pad[0]), (0, 0), (0, 0)), mode="edge"), ((0, 0), (pad[1], pad[1]), (0, 0)),
                   mode=mode) for eye in (left, right)]


def _occlusion(candidates: np.ndarray, mask: np.ndarray, band: np.ndarray, limit: int,
               wrap: bool) -> tuple[np.ndarray, np.ndarray]:
    """Band pixels left of a nearer surface, beside an unmatched strip: (near, occluded) bool maps
    (module docstring)."""
    far, near = candidates[0], candidates[1]
    gap, run = _strip_gap(mask, limit, wrap)
    with np.errstate(invalid="ignore"):
        hidden = np.nan_to_num(near - far, nan=-1.0)
        geometry = band & (near > far * (1 + JUMP)) & (far >= 0) & (gap <= hidden + limit / 4) & (run <= limit / 4)
    occluded = geometry & (gap <= hidden + ERODED_PX + 0.5)
    return geometry & ~occluded, occluded


def _rematch(eyes: list[np.ndarray], candidates: np.ndarray, rows: np.ndarray, cols: np.ndarray,
             eye_rows: np.ndarray, pad: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest candidate of each pixel (rows, cols), and its cost (`eye_rows`: the rows' indices in the eyes)."""
    chosen, cost = np.empty(rows.size, np.float32), np.empty(rows.size, np.float32)
    for start in range(0, rows.size, CHUNK):
        r, c = rows[start:start + CHUNK], cols[start:start + CHUNK]
        patches = _Patches(eyes, eye_rows[r], c, pad)
        values = candidates[:, r, c]
        costs = np.full(values.shape, np.inf, np.float32)
        for k, value in enumerate(values):
            known = np.isfinite(value)
            costs[k, known] = patches.cost(value[known], known)
        best = np.argmin(costs, axis=0)[None]
        chosen[start:start + CHUNK] = np.take_along_axis(values, best, axis=0)[0]
        cost[start:start + CHUNK] = np.take_along_axis(costs, best, axis=0)[0]
    return chosen, cost


def _typical_cost(eyes: list[np.ndarray], disparity: np.ndarray, rows: np.ndarray, cols: np.ndarray, pad,
                  samples: int = 4000) -> float:
    """Median cost of matched pixels away from the jumps (rows, cols) at their own `disparity` (an even
    sample of them)."""
    if rows.size == 0:
        return float("inf")
    pick = np.linspace(0, rows.size - 1, min(samples, rows.size)).astype(np.int64)
    return float(np.median(_Patches(eyes, rows[pick], cols[pick], pad).cost(disparity[pick])))


def _decide(disparity: np.ndarray, mask: np.ndarray, band: np.ndarray, eyes: tuple[np.ndarray, np.ndarray],
            eye_rows: np.ndarray, radius: int, wrap: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """snap_stereo_edges on rows of the eye (`eye_rows`: each row's index in the eyes)."""
    candidates = _candidates(disparity, mask & ~band, radius, wrap)
    near_side, occluded = _occlusion(candidates, mask, band, radius, wrap)
    out, out_mask = disparity.copy(), mask.copy()
    out[occluded] = candidates[0][occluded]
    out_mask[occluded] = False
    out[near_side] = candidates[1][near_side]
    out_mask[near_side] = True
    with np.errstate(invalid="ignore"):
        spread = np.fmax(candidates[0], candidates[1]) > np.fmin(candidates[0], candidates[1]) * (1 + JUMP)
    rows, cols = np.nonzero(band & spread & ~near_side & ~occluded)
    if rows.size:
        reach_x = int(np.ceil(max(np.nanmax(np.abs(candidates[:, rows, cols])), np.abs(disparity).max()))) + 2
        pad = (SIDE_PX + HALF_PX + 1, reach_x + SIDE_PX + HALF_PX + 2)
        padded = _pad_eyes(*eyes, pad, wrap)
        out[rows, cols], cost = _rematch(padded, candidates, rows, cols, eye_rows, pad)
        sure_rows, sure_cols = np.nonzero(mask & ~band)
        typical = max(_typical_cost(padded, disparity[sure_rows, sure_cols], eye_rows[sure_rows], sure_cols, pad),
                      NOISE_COST)
        out_mask[rows, cols] = (mask[rows, cols] | (cost <= MATCHED_COST * typical)) & (cost <= OCCLUDED_COST * typical)
    keep = band & ~occluded & (np.abs(out - disparity) <= KEEP * np.abs(out))
    out[keep] = disparity[keep]
    decided = near_side | occluded
    decided[rows, cols] = True
    return out, out_mask, decided


def snap_stereo_edges(disparity: np.ndarray, mask: np.ndarray, left: np.ndarray, right: np.ndarray, *,
                      wrap: bool, rows: np.ndarray | None = None, reach: int | None = None,
                      radius: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(disparity, mask, decided) of the left eye (pixels, col_left - col_right): the pixels near its
    jumps (`decided`) decided again between the surfaces around them (module docstring). `mask`: where
    the disparity was matched; `left`/`right`: the eyes, float32 [H, W, C] (smooth: blurred a little);
    `rows`: bool [H], the rows stereo measures (ODS: not the poles), None for all."""
    width = disparity.shape[1]
    reach = scaled_pixels(REACH_PX, width) if reach is None else reach
    radius = scaled_pixels(RADIUS_PX, width) if radius is None else radius
    band = jump_band(np.maximum(disparity, FLOOR_PX * width / 2048), reach, wrap, JUMP, across_rows=False,
                     window=scaled_pixels(WINDOW_PX, width))
    if rows is not None:  # not the jump from the measured rows to the unmeasured ones
        inside = np.convolve(~np.asarray(rows, bool), np.ones(2 * reach + 5), mode="same") == 0
        band &= inside[:, None]
    out, out_mask, decided = disparity.copy(), mask.copy(), np.zeros_like(mask)
    busy = np.flatnonzero(band.any(axis=1))  # the work is per row: only rows with a jump
    if busy.size:
        out[busy], out_mask[busy], decided[busy] = _decide(disparity[busy], mask[busy], band[busy], (left, right),
                                                           busy, radius, wrap)
    return out, out_mask, decided
