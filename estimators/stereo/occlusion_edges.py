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

A pixel keeps its own disparity where the winner is within KEEP of it. A pixel the matcher left
unmatched joins the mask by a match again only within RIM_PX of a matched pixel (the rim the
left-right check took off): deeper in an unmatched region, a textureless face, every candidate
matches about as well, and the one it takes is a neighbour's bad match (measured: 1-2 m nearer
than the truth over whole box faces of the outdoor renders). The occlusion geometry needs no
texture: its near side joins the mask wherever it is. A matched pixel nearer than both
candidates by JUMP is a thin nearer object within the band from both sides (a pole): no candidate
stands for its surface, so it is not matched again (the colour cut narrows it). Sizes are pixels of a
2048-wide eye (360 degrees), scaled with the pixels per turn. Columns wrap for ODS eyes (no seam at 0/360 degrees).
"""

from __future__ import annotations

import numpy as np

from ..parallel_rows import map_row_chunks
from ..postprocess.edges import JUMP, jump_band, scaled_pixels

REACH_PX, RADIUS_PX = 7, 32
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
# An unmatched pixel joins the mask by a match again only within this distance of a matched one (pixels of
# a 2048-wide eye).
RIM_PX = 2


def _wrapped(values: np.ndarray, pad: int) -> np.ndarray:
    return np.concatenate([values[:, -pad:], values, values[:, :pad]], axis=1) if pad else values


def _rim(mask: np.ndarray, distance: int, wrap: bool) -> np.ndarray:
    """Bool: matched, or within `distance` (a disk) of a matched pixel; columns wrap when `wrap`."""
    import cv2

    pad = min(distance, mask.shape[1]) if wrap else 0
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * distance + 1, 2 * distance + 1))
    near = cv2.dilate(_wrapped(mask.view(np.uint8), pad), disk) > 0
    return near[:, pad:pad + mask.shape[1]]


def _candidates(disparity: np.ndarray, settled: np.ndarray, rows: np.ndarray, cols: np.ndarray, limit: int,
                wrap: bool) -> np.ndarray:
    """[2, N] per pixel (rows, cols): the disparity of the nearest settled pixel left, then right, in its
    row (NaN: none within `limit`); columns wrap when `wrap`."""
    width = disparity.shape[1]
    pad = min(limit, width) if wrap else 0
    disparity, settled = _wrapped(disparity, pad), _wrapped(settled, pad)
    last = disparity.shape[1] - 1
    columns = np.arange(last + 1, dtype=np.int32)
    at = cols + pad
    found = np.empty((2, rows.size), disparity.dtype)
    # The nearest settled column at or left of each column; then at or right of it (on the mirrored rows).
    left = np.maximum.accumulate(np.where(settled, columns, -10 * width), axis=1)[rows, at]
    right = np.minimum.accumulate(np.where(settled[:, ::-1], columns[::-1], 10 * width), axis=1)[rows, last - at]
    for k, nearest in enumerate((left, right)):
        found[k] = np.where(np.abs(nearest - at) <= limit, disparity[rows, np.clip(nearest, 0, last)], np.nan)
    return found


def _strip_gap(mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, limit: int,
               wrap: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel (rows, cols): the columns from the last matched pixel before the nearest unmatched run
    at or left of it (the left end of an occluded strip), and from that run's nearest pixel; large where
    none."""
    width = mask.shape[1]
    pad = min(limit, width) if wrap else 0
    mask = _wrapped(mask, pad)
    columns = np.arange(mask.shape[1], dtype=np.int32)
    at = cols + pad
    unmatched = np.maximum.accumulate(np.where(mask, -10 * width, columns), axis=1)[rows, at]
    matched = np.maximum.accumulate(np.where(mask, columns, -10 * width), axis=1)
    before = np.where(unmatched >= 0, matched[rows, np.clip(unmatched, 0, mask.shape[1] - 1)], -10 * width)
    return at - before, at - unmatched


class _Patches:
    """The eyes (padded, flattened to [pixels, C]) and, per pixel asked about, the flat indices of the
    patch the cost's three windows share (2 HALF_PX + 1 rows, 2 SIDE_PX - 1 columns) with one column
    more on its left (the right eye's interpolation reads it), and the left eye's values in the
    patch, gathered once for every candidate disparity."""

    def __init__(self, eyes: list[np.ndarray], rows: np.ndarray, cols: np.ndarray, pad: tuple[int, int]):
        left, right = eyes
        step = left.shape[1]
        self.right = right.reshape(-1, right.shape[2])
        r = rows[:, None, None] + pad[0] + np.arange(-HALF_PX, HALF_PX + 1)[None, :, None]
        c = cols[:, None, None] + pad[1] + np.arange(-SIDE_PX, SIDE_PX)[None, None, :]
        self.index = r * step + c
        self.left = np.take(left.reshape(-1, left.shape[2]), self.index[:, :, 1:], axis=0)

    def cost(self, shift: np.ndarray, pick: np.ndarray | None = None) -> np.ndarray:
        """Per pixel (of `pick`): the mean of its own column's cost and the least one-sided window's
        (module docstring), the right eye taken `shift` pixels to the left (linear interpolation).
        Each window's mean reads its part of the patch in the order of its own offsets (along the
        side, then across)."""
        index, left = (self.index, self.left) if pick is None else (self.index[pick], self.left[pick])
        whole = np.floor(shift).astype(np.int64)
        fraction = (shift - whole).astype(np.float32)[:, None, None, None]
        read = np.take(self.right, index - whole[:, None, None], axis=0)
        sampled = read[:, :, 1:] * (1 - fraction) + read[:, :, :-1] * fraction
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


def _occlusion(candidates: np.ndarray, mask: np.ndarray, rows: np.ndarray, cols: np.ndarray, limit: int,
               wrap: bool) -> tuple[np.ndarray, np.ndarray]:
    """Of the band pixels (rows, cols), those left of a nearer surface beside an unmatched strip:
    (near, occluded) bool vectors (module docstring)."""
    far, near = candidates[0], candidates[1]
    gap, run = _strip_gap(mask, rows, cols, limit, wrap)
    with np.errstate(invalid="ignore"):
        hidden = np.nan_to_num(near - far, nan=-1.0)
        geometry = (near > far * (1 + JUMP)) & (far >= 0) & (gap <= hidden + limit / 4) & (run <= limit / 4)
    occluded = geometry & (gap <= hidden + ERODED_PX + 0.5)
    return geometry & ~occluded, occluded


def _rematch(eyes: list[np.ndarray], candidates: np.ndarray, rows: np.ndarray, cols: np.ndarray,
             eye_rows: np.ndarray, pad: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest of the [2, N] `candidates` of each pixel (rows, cols), and its cost (`eye_rows`: the
    rows' indices in the eyes)."""
    chosen, cost = np.empty(rows.size, np.float32), np.empty(rows.size, np.float32)
    for start in range(0, rows.size, CHUNK):
        r, c = rows[start:start + CHUNK], cols[start:start + CHUNK]
        patches = _Patches(eyes, eye_rows[r], c, pad)
        values = candidates[:, start:start + CHUNK]
        costs = np.full(values.shape, np.inf, np.float32)
        for k, value in enumerate(values):
            known = np.isfinite(value)
            costs[k, known] = patches.cost(value[known], known)
        best = np.argmin(costs, axis=0)[None]
        chosen[start:start + CHUNK] = np.take_along_axis(values, best, axis=0)[0]
        cost[start:start + CHUNK] = np.take_along_axis(costs, best, axis=0)[0]
    return chosen, cost


def _typical_cost(eyes: list[np.ndarray], disparity: np.ndarray, sure: np.ndarray, eye_rows: np.ndarray, pad,
                  samples: int = 4000) -> float:
    """Median cost of the `sure` pixels (matched, away from the jumps) at their own `disparity`, an even
    sample of them (`eye_rows`: each row's index in the eyes), at least NOISE_COST (inf where there is none)."""
    flat = np.flatnonzero(sure)
    if flat.size == 0:
        return float("inf")
    flat = flat[np.linspace(0, flat.size - 1, min(samples, flat.size)).astype(np.int64)]
    rows, cols = np.divmod(flat, sure.shape[1])
    return max(float(np.median(_Patches(eyes, eye_rows[rows], cols, pad).cost(disparity[rows, cols]))), NOISE_COST)


Decision = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _decide(disparity: np.ndarray, mask: np.ndarray, band: np.ndarray, rim: np.ndarray, eyes: list[np.ndarray],
            pad: tuple[int, int], typical: float, eye_rows: np.ndarray, radius: int, wrap: bool) -> Decision:
    """snap_stereo_edges on rows of the eye (`eye_rows`: each row's index in the `eyes`, padded by `pad`;
    `typical`: the median cost of a matched pixel; `rim`: the pixels a match again may put on the mask): the band
    pixels (rows, cols) and their (disparity, mask, decided)."""
    rows, cols = np.nonzero(band)
    candidates = _candidates(disparity, mask & ~band, rows, cols, radius, wrap)
    near_side, occluded = _occlusion(candidates, mask, rows, cols, radius, wrap)
    own, matched, joins = disparity[rows, cols], mask[rows, cols], rim[rows, cols]
    out, out_mask = own.copy(), matched.copy()
    out[occluded] = candidates[0][occluded]
    out_mask[occluded] = False
    out[near_side] = candidates[1][near_side]
    out_mask[near_side] = True
    with np.errstate(invalid="ignore"):
        spread = np.fmax(candidates[0], candidates[1]) > np.fmin(candidates[0], candidates[1]) * (1 + JUMP)
        thin = matched & (own > np.fmax(candidates[0], candidates[1]) * (1 + JUMP))
    again = spread & ~near_side & ~occluded & ~thin
    if again.any():
        out[again], cost = _rematch(eyes, candidates[:, again], rows[again], cols[again], eye_rows, pad)
        out_mask[again] = ((matched[again] | (joins[again] & (cost <= MATCHED_COST * typical)))
                           & (cost <= OCCLUDED_COST * typical))
    keep = ~occluded & (np.abs(out - own) <= KEEP * np.abs(out))
    out[keep] = own[keep]
    return rows, cols, out, out_mask, near_side | occluded | again


def snap_stereo_edges(disparity: np.ndarray, mask: np.ndarray, left: np.ndarray, right: np.ndarray, *,
                      wrap: bool, rows: np.ndarray | None = None, reach: int | None = None,
                      radius: int | None = None, turn: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(disparity, mask, decided) of the left eye (pixels, col_left - col_right): the pixels near its
    jumps (`decided`) decided again between the surfaces around them (module docstring). `mask`: where
    the disparity was matched; `left`/`right`: the eyes, float32 [H, W, C] (smooth: blurred a little);
    `rows`: bool [H], the rows stereo measures (ODS: not the poles), None for all; `turn`: pixels per
    360 degrees along the rows, which the sizes scale with (default: the width, an equirect eye)."""
    turn = disparity.shape[1] if turn is None else int(turn)
    reach = scaled_pixels(REACH_PX, turn) if reach is None else reach
    radius = scaled_pixels(RADIUS_PX, turn) if radius is None else radius
    band = jump_band(np.maximum(disparity, FLOOR_PX * turn / 2048), reach, wrap, JUMP, across_rows=False,
                     window=scaled_pixels(WINDOW_PX, turn))
    if rows is not None:  # not the jump from the measured rows to the unmeasured ones
        inside = np.convolve(~np.asarray(rows, bool), np.ones(2 * reach + 5), mode="same") == 0
        band &= inside[:, None]
    out, out_mask, decided = disparity.copy(), mask.copy(), np.zeros_like(mask)
    busy = np.flatnonzero(band.any(axis=1))  # the work is per row: only rows with a jump
    if busy.size == 0:
        return out, out_mask, decided
    # A candidate is a disparity of the same rows: the eyes padded by the largest are read in range.
    reach_x = int(np.ceil(np.abs(disparity[busy]).max())) + 2
    pad = (SIDE_PX + HALF_PX + 1, reach_x + SIDE_PX + HALF_PX + 2)
    eyes = _pad_eyes(left, right, pad, wrap)
    typical = _typical_cost(eyes, disparity[busy], mask[busy] & ~band[busy], busy, pad)
    rim = _rim(mask, scaled_pixels(RIM_PX, turn), wrap)

    def decide(chunk: np.ndarray):
        return _decide(disparity[chunk], mask[chunk], band[chunk], rim[chunk], eyes, pad, typical, chunk, radius, wrap)

    for chunk, (r, c, values, matched, changed) in map_row_chunks(decide, busy):
        out[chunk[r], c], out_mask[chunk[r], c], decided[chunk[r], c] = values, matched, changed
    return out, out_mask, decided
