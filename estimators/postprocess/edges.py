"""Depth edges on the plate's edges: a plate-guided weighted median in a band around depth jumps.

Block matching fattens foreground objects (their depth bleeds a few pixels into the
background, the width of a matching window), and resampling a network's views smears a
depth jump over a few pixels of intermediate values. Either puts a composite's occlusion
edge beside the plate's. `snap_edges` finds where the depth jumps (a relative range over
JUMP within a small window), takes the pixels within `reach` of such a jump as undecided,
and gives each of them that lies between the two sides (a smeared value: beyond JUMP / 2 of
both the nearest and the farthest value within `reach`), or is invalid, the weighted median of its window's values, weighted by how alike
the plate's colours are (a Gaussian of the RGB distance), with the undecided and the
invalid pixels counting little: each undecided pixel takes the depth of the side whose
colour it shares. Only the band is touched, so the cost follows the length of the edges;
columns wrap for 360 footage (no seam at 0/360 degrees).
"""

from __future__ import annotations

import numpy as np

from ..parallel_rows import map_row_blocks

# A depth jump: the largest over the smallest value of a 5 x 5 window above 1 + JUMP.
JUMP = 0.2
# Reach and window radius in pixels of a 2048-wide frame, scaled with the width.
REACH_PX, RADIUS_PX = 4, 8
# Colour similarity: Gaussian of the RGB distance (0..1 values), this standard deviation.
SIGMA_COLOUR = 0.08
# Weight of the undecided pixels against decided ones.
UNDECIDED_WEIGHT = 0.05
# Values below this share of the frame's median count as that much when looking for jumps (the
# far field's relative noise is large, and it has nothing to hide behind it).
FLOOR_SHARE = 0.1
# Pixels processed at a time (memory: a few hundred bytes per pixel and window sample).
CHUNK = 65536


def scaled_pixels(pixels: float, width: int) -> int:
    """A size given in pixels of a 2048-wide frame, for a frame `width` wide (at least 1)."""
    return max(1, round(pixels * width / 2048))


def _wrap_columns(values: np.ndarray, pad: int, wrap: bool) -> np.ndarray:
    """`values` with `pad` columns of the other side on each side where `wrap`, else as they are."""
    import cv2

    return cv2.copyMakeBorder(values, 0, 0, pad, pad, cv2.BORDER_WRAP) if wrap and pad else values


def _window_extreme(values: np.ndarray, radius: int, wrap: bool, largest: bool, rows: int | None = None) -> np.ndarray:
    """Window max or min of a float32 (or uint8) map, `radius` around each pixel (`rows` above and below,
    default `radius`); columns wrapped or clamped, rows clamped."""
    import cv2

    rows = radius if rows is None else rows
    kernel = np.ones((2 * rows + 1, 2 * radius + 1), np.uint8)
    # OpenCV's morphology leaves out what lies beyond the border: the window clamped, as edge padding.
    out = (cv2.dilate if largest else cv2.erode)(_wrap_columns(values, radius, wrap), kernel)
    return out[:, radius:radius + values.shape[1]] if wrap else out


def jump_band(values: np.ndarray, reach: int, wrap: bool = True, jump: float = JUMP,
              across_rows: bool = True, window: int = 2) -> np.ndarray:
    """Bool [H, W]: pixels within `reach` of a depth jump of a positive map (module docstring);
    `across_rows` False: jumps along the rows only (a slanted floor's steep vertical gradient is none);
    `window`: the jump is looked for over 2 * window + 1 pixels (wider: a smoothed jump's ramp too)."""
    import cv2

    kernel = np.ones((2 * window + 1 if across_rows else 1, 2 * window + 1), np.uint8)

    def band(rows: slice) -> np.ndarray:
        positive = _wrap_columns(np.maximum(values[rows], np.float32(1e-6), dtype=np.float32), window, wrap)
        jumps = (cv2.dilate(positive, kernel) > cv2.erode(positive, kernel) * np.float32(1.0 + jump)).view(np.uint8)
        if wrap:
            jumps = jumps[:, window:window + values.shape[1]]
        return _window_extreme(np.ascontiguousarray(jumps), reach, wrap, largest=True) > 0

    return map_row_blocks(band, values.shape[0], reach + (window if across_rows else 0))


def _offsets(radius: int) -> np.ndarray:
    """Window offsets (dy, dx): every pixel within 2, every other one further out."""
    span = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(span, span, indexing="ij")
    keep = (np.maximum(np.abs(dy), np.abs(dx)) <= 2) | ((dy % 2 == 0) & (dx % 2 == 0))
    return np.stack([dy[keep], dx[keep]], axis=1)


def _weighted_median(samples: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of [N, K] samples: the weighted median, and the row's total weight."""
    order = np.argsort(samples, axis=1)
    sorted_samples = np.take_along_axis(samples, order, axis=1)
    cumulative = np.cumsum(np.take_along_axis(weights, order, axis=1), axis=1)
    total = cumulative[:, -1]
    index = np.argmax(cumulative >= 0.5 * total[:, None], axis=1)
    return sorted_samples[np.arange(samples.shape[0]), index], total


def _snap_chunk(rows: np.ndarray, cols: np.ndarray, padded: dict, offsets: np.ndarray, pad: int,
                sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted medians of the valid samples and valid-weight shares of the band pixels (rows, cols)."""
    sample_rows = rows[:, None] + pad + offsets[None, :, 0]
    sample_cols = cols[:, None] + pad + offsets[None, :, 1]
    colour = padded["rgb"][rows + pad, cols + pad]
    difference = padded["rgb"][sample_rows, sample_cols] - colour[:, None, :]
    weights = np.exp(-np.einsum("nkc,nkc->nk", difference, difference) / np.float32(2 * sigma * sigma))
    spatial = np.exp(-(offsets ** 2).sum(1) / np.float32(2 * (pad / 2) ** 2)).astype(np.float32)
    weights *= spatial[None, :] * padded["reliability"][sample_rows, sample_cols]
    valid_weights = weights * padded["valid"][sample_rows, sample_cols]
    median, valid_total = _weighted_median(padded["values"][sample_rows, sample_cols], valid_weights)
    return median, valid_total / np.maximum(weights.sum(1), 1e-12)


def _pad(values: np.ndarray, pad: int, wrap: bool) -> np.ndarray:
    widths = [(pad, pad), (0, 0)] + [(0, 0)] * (values.ndim - 2)
    padded = np.pad(values, widths, mode="edge")
    widths = [(0, 0), (pad, pad)] + [(0, 0)] * (values.ndim - 2)
    return np.pad(padded, widths, mode="wrap" if wrap else "edge")


def snap_edges(values: np.ndarray, valid: np.ndarray, rgb: np.ndarray, *, wrap: bool = True,
               reach: int | None = None, radius: int | None = None, sigma_colour: float = SIGMA_COLOUR,
               fattened: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) with the pixels near depth jumps given the depth of the side whose colour they
    share (module docstring). `values`: a positive depth-like float32 map [H, W] (inverse metres or
    disparity); `valid`: its mask; `rgb`: the plate [H, W, 3] in 0..1. A band pixel is valid after
    when most of its median's weight came from valid pixels; elsewhere nothing changes.
    `reach`/`radius` default to REACH_PX/RADIUS_PX scaled to the width. `fattened`: every band pixel
    is decided again, not only the smeared ones (a block matcher's depth: its foreground bleeds into
    the background with the foreground's own value)."""
    values = np.asarray(values, np.float32)
    valid = np.asarray(valid, bool)
    height, width = values.shape
    if np.shape(rgb)[:2] != (height, width):
        raise ValueError(f"the plate is {np.shape(rgb)[:2]}, the depth {values.shape}")
    reach = scaled_pixels(REACH_PX, width) if reach is None else int(reach)
    radius = scaled_pixels(RADIUS_PX, width) if radius is None else int(radius)
    positive = valid & np.isfinite(values) & (values > 0)
    floor = FLOOR_SHARE * float(np.median(values[positive])) if positive.any() else 0.0
    floored = np.where(valid, np.maximum(values, floor), floor).astype(np.float32)
    band = jump_band(floored, reach, wrap, across_rows=not fattened) & np.isfinite(values)
    margin = np.float32(1.0 + JUMP / 2)
    between = (floored > _window_extreme(floored, reach, wrap, largest=False) * margin) & \
        (floored * margin < _window_extreme(floored, reach, wrap, largest=True))
    rows, cols = np.nonzero(band & (between | ~valid | fattened))
    if rows.size == 0:
        return values, valid
    reliability = np.where(band, UNDECIDED_WEIGHT, 1.0)
    padded = {"rgb": _pad(np.asarray(rgb, np.float32)[..., :3], radius, wrap),
              "values": _pad(values, radius, wrap), "valid": _pad(valid.astype(np.float32), radius, wrap),
              "reliability": _pad(reliability.astype(np.float32), radius, wrap)}
    offsets = _offsets(radius)
    snapped, share = np.empty(rows.size, np.float32), np.empty(rows.size, np.float32)
    for start in range(0, rows.size, CHUNK):
        part = slice(start, start + CHUNK)
        snapped[part], share[part] = _snap_chunk(rows[part], cols[part], padded, offsets, radius, sigma_colour)
    out, out_valid = values.copy(), valid.copy()
    decided = share > 0.5
    out[rows[decided], cols[decided]] = snapped[decided]
    out_valid[rows, cols] = decided
    return out, out_valid
