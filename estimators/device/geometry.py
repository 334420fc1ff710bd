"""The fixed geometry of a view layout on a device: sampling grids, footprints, weights, rays.

Everything here depends only on (views, panorama size, device), so it is built once per
clip (on the host, with the numpy reference's own functions, then moved) and cached, as the
numpy path caches its maps and footprints. Views of one layout must share one size (every
preset's do): their maps are then one tensor [V, h, w] and each step one batched call.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..panorama.blending import view_weight
from ..panorama.equirect import direction_to_pixel
from ..panorama.projection import View, footprint
from .sampler import cv2_taps, make_grid

PAD = 2  # the numpy reference's equirect padding (projection._PAD)
ALIGN_EDGE = 0.98  # overlap samples keep off the views' outer 1% (alignment._overlap_samples)


def view_size(views: tuple[View, ...]) -> tuple[int, int]:
    """(h, w) shared by all views; ValueError where they differ."""
    sizes = {(v.height, v.width) for v in views}
    if len(sizes) != 1:
        raise ValueError(f"the device trip needs views of one size, got {sorted(sizes)}")
    return next(iter(sizes))


@dataclass(frozen=True)
class ProjectionLayout:
    """Where every view pixel reads the panorama (as projection._view_source_maps + cv2.remap).

    `grid` [1, 1, V*h*w, 2] reads the unpadded frame: right wherever all four bilinear taps
    lie inside it. The view pixels whose taps cross the wrap or a pole (`edge` [E], flat in
    V*h*w) are read explicitly instead: `taps` [E * 4] flat panorama pixels (wrapped, or
    mirrored half a turn away past a pole, as pad_equirect fills its border) with `weights`
    [E, 4] float32, OpenCV's.
    """

    grid: torch.Tensor
    edge: torch.Tensor
    taps: torch.Tensor
    weights: torch.Tensor


def _wrapped_taps(rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> np.ndarray:
    """Flat pixels of (possibly outside) unpadded taps, as pad_equirect's border holds them."""
    cols = np.mod(cols, width)
    past = (rows < 0) | (rows > height - 1)
    rows = np.where(rows < 0, -1 - rows, np.where(rows > height - 1, 2 * height - 1 - rows, rows))
    cols = np.where(past, np.mod(cols - width // 2, width), cols)
    return rows * width + cols


@functools.lru_cache(maxsize=8)
def projection_layout(views: tuple[View, ...], height: int, width: int, device) -> ProjectionLayout:
    """The projection's reads for `views` of an H x W panorama (see ProjectionLayout)."""
    xs, ys = [], []
    for view in views:
        rows, cols = direction_to_pixel(view.rays(), height, width)
        xs.append((cols + PAD).astype(np.float32).ravel())
        ys.append((rows + PAD).astype(np.float32).ravel())
    x, y = np.concatenate(xs), np.concatenate(ys)
    tap_cols, tap_rows, weights = cv2_taps(x, y)
    tap_cols, tap_rows = tap_cols - PAD, tap_rows - PAD
    outside = ((tap_rows < 0) | (tap_rows > height - 1) | (tap_cols < 0) | (tap_cols > width - 1)).any(axis=1)
    edge = np.flatnonzero(outside)
    taps = _wrapped_taps(tap_rows[edge], tap_cols[edge], height, width)
    return ProjectionLayout(make_grid(x, y, height, width, device, offset=PAD),
                            torch.from_numpy(edge).to(device), torch.from_numpy(taps.reshape(-1)).to(device),
                            torch.from_numpy(weights[edge]).to(device))


@functools.lru_cache(maxsize=8)
def view_cosines(views: tuple[View, ...], device) -> torch.Tensor:
    """float32 [V, h, w]: cosine of each view pixel's ray to its view's axis."""
    return torch.from_numpy(np.stack([v.cos_to_axis() for v in views])).to(device)


@dataclass(frozen=True)
class Footprints:
    """Where every view lands in an H x W panorama, batched over views.

    `grid` [V, 1, Pmax, 2]: each view's footprint pixels in its (padded, for an equirect
    view) map; a view with fewer than Pmax pixels repeats its last one. `pixels` [V * Pmax]:
    the equirect pixel of each entry, H * W (a spare slot past the panorama) for the
    repeats; `weights` [V * Pmax]: their border weights, 0 for the repeats; `weight_sum`
    [H * W] over all views.
    """

    grid: torch.Tensor
    pixels: torch.Tensor
    weights: torch.Tensor
    weight_sum: torch.Tensor
    padded: bool


def _view_footprint(view: View, height: int, width: int):
    """(pixels, x, y, weights) of one view, built without filling the numpy path's caches."""
    fp = footprint.__wrapped__(view, height, width)
    weights = view_weight(view, fp.a, fp.b)
    if view.projection == "equirect":
        return fp.pixels, fp.x + np.float32(PAD), fp.y + np.float32(PAD), weights
    return fp.pixels, fp.x, fp.y, weights


def _padded(values: np.ndarray, length: int, fill) -> np.ndarray:
    tail = np.full(length - values.size, fill if values.size == 0 or fill is not None else values[-1],
                   values.dtype)
    return np.concatenate((values, tail))


@functools.lru_cache(maxsize=4)
def footprints(views: tuple[View, ...], height: int, width: int, device) -> Footprints:
    """The batched footprints of `views` in an H x W panorama (see Footprints)."""
    h, w = view_size(views)
    padded = views[0].projection == "equirect"
    source = (h + 2 * PAD, w + 2 * PAD) if padded else (h, w)
    parts = [_view_footprint(view, height, width) for view in views]
    longest = max(max(p[0].size for p in parts), 1)
    grids, pixels, weights = [], [], []
    weight_sum = np.zeros(height * width, np.float32)
    for pix, x, y, wts in parts:
        grids.append(make_grid(_padded(x, longest, None if x.size else 0.0),
                               _padded(y, longest, None if y.size else 0.0), *source, "cpu"))
        pixels.append(_padded(pix.astype(np.int64), longest, height * width))
        weights.append(_padded(wts, longest, 0.0))
        weight_sum[pix] += wts
    return Footprints(torch.cat(grids).to(device), torch.from_numpy(np.concatenate(pixels)).to(device),
                      torch.from_numpy(np.concatenate(weights)).to(device), torch.from_numpy(weight_sum).to(device),
                      padded)


@functools.lru_cache(maxsize=8)
def nearest_pixels(views: tuple[View, ...], height: int, width: int, device) -> torch.Tensor:
    """long [V, h, w]: the H x W panorama pixel nearest each view pixel (infinity.sample_mask)."""
    out = []
    for view in views:
        rows, cols = direction_to_pixel(view.rays(), height, width)
        rows = np.clip(np.floor(rows).astype(np.int64), 0, height - 1)
        cols = np.mod(np.floor(cols).astype(np.int64), width)
        out.append(rows * width + cols)
    return torch.from_numpy(np.stack(out)).to(device)


@dataclass(frozen=True)
class OverlapGeometry:
    """Per view, the sample pixels of alignment._overlap_samples before the validity test:
    `pixels`, `a`, `b` (numpy, small) and `grid` [V, 1, Pmax, 2] into the view maps
    (`counts` [V] real entries each, the rest padding)."""

    pixels: tuple[np.ndarray, ...]
    a: tuple[np.ndarray, ...]
    b: tuple[np.ndarray, ...]
    grid: torch.Tensor
    counts: tuple[int, ...]


@functools.lru_cache(maxsize=8)
def overlap_geometry(views: tuple[View, ...], sample_h: int, device) -> OverlapGeometry:
    """The alignment's overlap sample layout on an equirect grid `sample_h` rows high."""
    h, w = view_size(views)
    padded = views[0].projection == "equirect"
    pixels, a, b, xs, ys = [], [], [], [], []
    for view in views:
        fp = footprint(view, sample_h, 2 * sample_h)
        sub = fp.subset((np.abs(fp.a) < ALIGN_EDGE) & (np.abs(fp.b) < ALIGN_EDGE))
        pixels.append(sub.pixels)
        a.append(sub.a)
        b.append(sub.b)
        xs.append(sub.x + np.float32(PAD) if padded else sub.x)
        ys.append(sub.y + np.float32(PAD) if padded else sub.y)
    longest = max(max(p.size for p in pixels), 1)
    source = (h + 2 * PAD, w + 2 * PAD) if padded else (h, w)
    grids = []
    for x, y in zip(xs, ys, strict=True):
        tail = longest - x.size
        grids.append(make_grid(np.r_[x, np.zeros(tail, np.float32)], np.r_[y, np.zeros(tail, np.float32)],
                               *source, "cpu"))
    return OverlapGeometry(tuple(pixels), tuple(a), tuple(b), torch.cat(grids).to(device),
                           tuple(p.size for p in pixels))
