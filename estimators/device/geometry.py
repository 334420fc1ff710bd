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
from .sampler import ViewReads, cv2_taps, make_grid

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
    """Where every view lands in an H x W panorama.

    `reads`: each view's footprint points read from its map (sampler.ViewReads, over the
    maps padded by `source_pad`: 2 for an equirect view, pad_equirect's border, else 0), in
    the padded layout [V * longest]; `pixels` [V * longest]: each entry's equirect pixel, H * W
    (a spare slot past the panorama) for the padding; `weights`: its border weight, 0 for the
    padding; `weight_sum` [H * W] over all views.
    """

    reads: ViewReads
    pixels: torch.Tensor
    weights: torch.Tensor
    weight_sum: torch.Tensor
    source_pad: int


def _view_footprint(view: View, height: int, width: int):
    """(pixels, x, y, weights) of one view, built without filling the numpy path's caches."""
    fp = footprint.__wrapped__(view, height, width)
    weights = view_weight(view, fp.a, fp.b)
    if view.projection == "equirect":
        return fp.pixels, fp.x + np.float32(PAD), fp.y + np.float32(PAD), weights
    return fp.pixels, fp.x, fp.y, weights


def view_reads(xs, ys, views: tuple[View, ...], device, exact: bool) -> tuple[ViewReads, int]:
    """ViewReads of per-view point lists in the views' maps (padded for an equirect view)."""
    h, w = view_size(views)
    pad = PAD if views[0].projection == "equirect" else 0
    return ViewReads(xs, ys, h + 2 * pad, w + 2 * pad, device, exact), pad


def _padded(values: np.ndarray, length: int, fill) -> np.ndarray:
    return np.concatenate((values, np.full(length - values.size, fill, values.dtype)))


@functools.lru_cache(maxsize=4)
def footprints(views: tuple[View, ...], height: int, width: int, device, exact: bool = False) -> Footprints:
    """The footprints of `views` in an H x W panorama (see Footprints; `exact`: ViewReads')."""
    parts = [_view_footprint(view, height, width) for view in views]
    weight_sum = np.zeros(height * width, np.float32)
    for pix, _, _, wts in parts:
        weight_sum[pix] += wts
    reads, pad = view_reads([p[1] for p in parts], [p[2] for p in parts], views, device, exact)
    pixels = np.concatenate([_padded(p[0].astype(np.int64), reads.longest, height * width) for p in parts])
    weights = np.concatenate([_padded(p[3], reads.longest, 0.0) for p in parts])
    return Footprints(reads, torch.from_numpy(pixels).to(device), torch.from_numpy(weights).to(device),
                      torch.from_numpy(weight_sum).to(device), pad)


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
    `pixels`, `a`, `b` (numpy, small) and `reads` of them from the views' maps (exact: the
    alignment's samples are cv2's to the bit), `source_pad` as Footprints'."""

    pixels: tuple[np.ndarray, ...]
    a: tuple[np.ndarray, ...]
    b: tuple[np.ndarray, ...]
    reads: ViewReads
    source_pad: int


@functools.lru_cache(maxsize=8)
def overlap_geometry(views: tuple[View, ...], sample_h: int, device) -> OverlapGeometry:
    """The alignment's overlap sample layout on an equirect grid `sample_h` rows high."""
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
    reads, pad = view_reads(xs, ys, views, device, exact=True)
    return OverlapGeometry(tuple(pixels), tuple(a), tuple(b), reads, pad)
