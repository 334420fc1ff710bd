"""Alignment of view streams: one scale and shift per view for a whole window of frames.

A video network (Video Depth Anything) run on each view of a 360 layout, followed over
time, is consistent within a window of frames but not across views, nor from one window
to the next. Where `alignment.align_views` solves each frame alone, this module solves a
window at once, so that the correction does not change from frame to frame:

- `solve_window`: for a window of T frames, every view v gets one scale S_v and shift T_v,
  used as in alignment.py: aligned_v = cos_v * (S_v * (D_v - c_v) / n_v + T_v), with c_v
  and n_v the median and 2..98 percentile spread of the view's output over the whole
  window (metric kinds: aligned_v = S_v * D_v, D_v inverse distance, no shift). Wherever
  two views see the same equirect sample pixel in the same frame, their aligned values
  should agree: the pairs of all T frames form one least-squares problem, reweighted a few
  times (Cauchy, residuals relative to the local disparity) so occlusion edges and moving
  objects' borders do not pull it. For relative views the overlaps fix everything but one
  global scale (a shift of inverse planar depth is not a shift along the rays, so views
  only agree with the true shift); the gauge is a weighted mean of the scales = 1, as in
  alignment.py (each view weighted by how well its overlaps observe its scale). A view
  that shares no valid pixel with another is held at the identity.
- `fit_scale`: the one scale that carries a window's aligned values onto the previous
  window's on the frames they share (trimmed least squares), which chains the windows'
  gauges into one scale for the whole stream.

Everything here is deterministic numpy; it calls alignment.py's public `robust_spread`
and the projection's footprints.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .alignment import OBSERVABILITY_FLOOR, robust_spread
from .projection import View, footprint

KINDS = ("relative-disparity", "metric-distance")
SAMPLE_HEIGHT = 64  # overlap samples on an equirect grid of this many rows (as alignment.py)
SHIFT_RIDGE = 1e-3  # a tiny pull of the shifts towards 0, for a well-posed system
# Residuals are relative to the pair's disparity, floored at 5% of its 90th percentile: sky and
# far ground (disparity ~ 0) would otherwise get weights without bound and drown the rest.
LEVEL_FLOOR, LEVEL_PERCENTILE = 0.05, 90.0
SIGMA_FLOOR = 1e-3  # smallest robust scale of the relative residuals (see alignment.py)
CAUCHY = 3.0  # the reweighting's tolerance, in robust standard deviations
UNOBSERVED = 0.05  # a view observed less than this (relative to the best) is left out of the gauge


@dataclass(frozen=True)
class WindowAlignment:
    """Per-view corrections for a window: `scale`, `shift`, `centre`, `normaliser`: float64 [V].

    `pairs`: overlap samples (over all frames) the solve used; `residual`: their robust RMS
    disagreement after alignment, relative to the local disparity.
    """

    kind: str
    scale: np.ndarray
    shift: np.ndarray
    centre: np.ndarray
    normaliser: np.ndarray
    pairs: int = 0
    residual: float = 0.0

    def scaled(self, factor: float) -> WindowAlignment:
        """The same correction with every aligned value multiplied by `factor`."""
        return WindowAlignment(self.kind, self.scale * factor, self.shift * factor, self.centre, self.normaliser,
                               self.pairs, self.residual)

    def apply(self, disparities, views: tuple[View, ...]) -> list[np.ndarray]:
        """One frame's view outputs (raw relative disparity, or inverse distance) as aligned
        inverse distance along the rays, float32 [h, w] per view; invalid (NaN) input gives 0."""
        out = []
        for i, (d, view) in enumerate(zip(disparities, views, strict=True)):
            d = np.nan_to_num(np.asarray(d, dtype=np.float64), nan=self.centre[i])
            if self.kind == "metric-distance":
                out.append((self.scale[i] * d).astype(np.float32))
            else:
                x = (d - self.centre[i]) / self.normaliser[i]
                out.append((view.cos_to_axis() * (self.scale[i] * x + self.shift[i])).astype(np.float32))
        return out


@dataclass(frozen=True)
class _Layout:
    """The overlap structure of a view layout on the sample grid: per view, its sample
    positions; per entry (view, sample pixel), sorted by pixel; the pairs of entries."""

    footprints: tuple
    entry_view: np.ndarray
    entry_offset: np.ndarray  # index of the entry within its view's samples
    cos: np.ndarray
    first: np.ndarray
    second: np.ndarray


@functools.lru_cache(maxsize=8)
def _layout(views: tuple[View, ...], sample_height: int) -> _Layout:
    prints, parts = [], []
    for i, view in enumerate(views):
        fp = footprint(view, sample_height, 2 * sample_height)
        fp = fp.subset((np.abs(fp.a) < 0.98) & (np.abs(fp.b) < 0.98))
        prints.append(fp)
        cos = fp.sample(view.cos_to_axis()).astype(np.float64) if fp.pixels.size else np.zeros(0)
        parts.append((fp.pixels.astype(np.int64), np.full(fp.pixels.size, i), np.arange(fp.pixels.size), cos))
    pixels, entry_view, offset, cos = (np.concatenate(col) for col in zip(*parts, strict=True))
    order = np.argsort(pixels, kind="stable")
    pixels = pixels[order]
    _, starts, counts = np.unique(pixels, return_index=True, return_counts=True)
    chained = np.flatnonzero(pixels[:-1] == pixels[1:])
    ring = counts >= 3  # the views seeing one pixel are paired as a ring, as in alignment.py
    first = np.concatenate((chained, starts[ring]))
    second = np.concatenate((chained + 1, starts[ring] + counts[ring] - 1))
    return _Layout(tuple(prints), entry_view[order], offset[order], cos[order], first, second)


def _normalisation(frames, valid, n_views: int, metric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each view's median and spread over the window (0 and 1 for metric kinds)."""
    centre, normaliser = np.zeros(n_views), np.ones(n_views)
    if metric:
        return centre, normaliser
    for v in range(n_views):
        values = np.concatenate([np.asarray(f[v], np.float64)[m[v]].ravel()[::7] for f, m in zip(frames, valid, strict=True)])
        if values.size:
            centre[v] = float(np.median(values))
            normaliser[v] = robust_spread(values)
    return centre, normaliser


def _sample_frame(layout: _Layout, maps, valid, centre, normaliser) -> tuple[np.ndarray, np.ndarray]:
    """A frame's normalised values and validity at every entry of the layout."""
    values, ok = [], []
    for v, fp in enumerate(layout.footprints):
        if fp.pixels.size == 0:
            values.append(np.zeros(0))
            ok.append(np.zeros(0, bool))
            continue
        good = fp.sample(np.asarray(valid[v], np.float32)) > 0.999
        sampled = fp.sample(np.where(valid[v], maps[v], 0.0).astype(np.float32)).astype(np.float64)
        values.append((sampled - centre[v]) / normaliser[v])
        ok.append(good)
    flat_values, flat_ok = np.concatenate(values), np.concatenate(ok)
    starts = np.cumsum([0] + [fp.pixels.size for fp in layout.footprints])[:-1]
    index = starts[layout.entry_view] + layout.entry_offset
    return flat_values[index], flat_ok[index]


def _pair_rows(layout: _Layout, frames, valid, centre, normaliser, metric: bool):
    """Every usable pair of every frame: (view i, view j, coefficient rows of i and j)."""
    view_i, view_j, rows_i, rows_j = [], [], [], []
    for maps, masks in zip(frames, valid, strict=True):
        x, ok = _sample_frame(layout, maps, masks, centre, normaliser)
        use = ok[layout.first] & ok[layout.second]
        a, b = layout.first[use], layout.second[use]
        for entries, views_out, rows_out in ((a, view_i, rows_i), (b, view_j, rows_j)):
            views_out.append(layout.entry_view[entries])
            coefficients = x[entries, None] if metric else np.stack((layout.cos[entries] * x[entries], layout.cos[entries]), 1)
            rows_out.append(coefficients)
    return (np.concatenate(view_i).astype(int), np.concatenate(view_j).astype(int),
            np.concatenate(rows_i), np.concatenate(rows_j))


def _designs(view_i, view_j, rows_i, rows_j, n_views: int):
    """Sparse pair designs [P, width * V] of the first and the second view of each pair; the
    unknowns are (S_0 .. S_V-1[, T_0 .. T_V-1]) and a pair's residual is (first - second) @ x."""
    import scipy.sparse as sp

    pairs, width = rows_i.shape
    out = []
    for views_of, rows in ((view_i, rows_i), (view_j, rows_j)):
        columns = np.stack([column * n_views + views_of for column in range(width)], 1)
        out.append(sp.csr_matrix((rows.ravel(), (np.repeat(np.arange(pairs), width), columns.ravel())),
                                 shape=(pairs, width * n_views)))
    return out[0], out[1]


def _observability(view_i, view_j, rows_i, rows_j, seen, n_views: int, metric: bool) -> np.ndarray:
    """Each view's weight in the gauge: the 10..90 percentile spread of its values in the pairs,
    floored at OBSERVABILITY_FLOOR of the best view's; 0 for a view whose values hardly vary
    (UNOBSERVED of the best), whose scale trades freely against its shift (sky only, a plane
    seen head-on): in the gauge it could carry the whole scale while every other view shrank to 0."""
    if metric:
        return seen.astype(float)
    weight = np.zeros(n_views)
    for v in range(n_views):
        values = np.concatenate((rows_i[view_i == v, 0] / rows_i[view_i == v, 1],
                                 rows_j[view_j == v, 0] / rows_j[view_j == v, 1]))
        if values.size:
            low, high = np.percentile(values, [10.0, 90.0])
            weight[v] = high - low
    if not weight.any():
        return seen.astype(float)
    best = weight.max()
    return np.where(weight < UNOBSERVED * best, 0.0, np.maximum(weight, OBSERVABILITY_FLOOR * best)) * seen


def _solve(design, weights, n_views: int, metric: bool, gauge: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Minimise sum w (design x)^2 (+ a ridge on the shifts) with gauge . S = 1; unseen views at the identity."""
    unknowns = design.shape[1]
    normal = np.asarray((design.T @ design.multiply(weights[:, None])).todense())
    unseen = (~seen).astype(float)
    anchor = unseen if metric else np.r_[unseen, unseen]
    target = np.r_[np.ones(n_views), np.zeros(unknowns - n_views)]
    strength = max(float(np.trace(normal)) / max(unknowns, 1), 1.0)
    normal += np.diag(anchor * strength)
    if not metric:
        normal[n_views:, n_views:] += np.eye(n_views) * SHIFT_RIDGE**2 * max(len(weights), 1)
    kkt = np.zeros((unknowns + 1, unknowns + 1))
    kkt[:unknowns, :unknowns] = normal
    kkt[unknowns, :n_views] = kkt[:n_views, unknowns] = gauge / gauge.sum()
    return np.linalg.solve(kkt, np.r_[anchor * strength * target, 1.0])[:unknowns]


def _irls(first, second, n_views: int, metric: bool, gauge, seen, iterations: int) -> tuple[np.ndarray, float]:
    """Cauchy-reweighted solves; residuals relative to the first solution's local disparity."""
    design = (first - second).tocsr()
    pairs = design.shape[0]
    x = _solve(design, np.ones(pairs), n_views, metric, gauge, seen)
    level = 0.5 * np.abs(first @ x + second @ x)
    level = np.maximum(level, max(LEVEL_FLOOR * float(np.percentile(level, LEVEL_PERCENTILE)), 1e-12))
    for _ in range(iterations - 1):
        relative = (design @ x) / level
        sigma = max(1.4826 * float(np.median(np.abs(relative))), SIGMA_FLOOR)
        weights = 1.0 / (level**2 * (1.0 + (relative / (CAUCHY * sigma)) ** 2))
        x = _solve(design, weights * (pairs / weights.sum()), n_views, metric, gauge, seen)
    relative = np.abs(design @ x) / level
    kept = relative[relative <= np.percentile(relative, 95.0)]
    return x, float(np.sqrt(np.mean(kept**2))) if kept.size else 0.0


def solve_window(frames, views: tuple[View, ...], kind: str = "relative-disparity", *,
                 valid=None, sample_height: int = SAMPLE_HEIGHT, iterations: int = 4) -> WindowAlignment:
    """One scale and shift per view for a window of frames (module docstring).

    `frames`: per frame, per view, the output [h, w] (relative disparity, or for
    `metric-distance` inverse distance along the rays); `valid`: the same of bool masks
    (default: finite values).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    n_views = len(views)
    if any(len(f) != n_views for f in frames):
        raise ValueError(f"every frame must give one map per view ({n_views})")
    metric = kind == "metric-distance"
    if valid is None:
        valid = [[np.isfinite(m) for m in f] for f in frames]
    centre, normaliser = _normalisation(frames, valid, n_views, metric)
    identity = WindowAlignment(kind, np.ones(n_views), np.zeros(n_views), centre, normaliser)
    if n_views < 2:
        return identity
    layout = _layout(tuple(views), int(sample_height))
    view_i, view_j, rows_i, rows_j = _pair_rows(layout, frames, valid, centre, normaliser, metric)
    if view_i.size == 0:
        return identity
    seen = np.zeros(n_views, bool)
    seen[view_i] = seen[view_j] = True
    gauge = _observability(view_i, view_j, rows_i, rows_j, seen, n_views, metric)
    first, second = _designs(view_i, view_j, rows_i, rows_j, n_views)
    x, residual = _irls(first, second, n_views, metric, gauge, seen, iterations)
    shift = np.zeros(n_views) if metric else x[n_views:]
    return WindowAlignment(kind, x[:n_views], shift, centre, normaliser, int(view_i.size), residual)


def fit_scale(values, targets, masks, *, step: int = 3, rounds: int = 3, cutoff: float = 3.0) -> float:
    """The scale s minimising sum (s * value - target)^2 over the masked pixels of all maps, trimmed.

    After each fit, pixels whose residual (relative to the target) exceeds `cutoff` robust
    standard deviations are left out. `step` subsamples each map. 1 when nothing is usable.
    """
    x = np.concatenate([np.asarray(v, np.float64)[::step, ::step][np.asarray(m)[::step, ::step]]
                        for v, m in zip(values, masks, strict=True)])
    y = np.concatenate([np.asarray(t, np.float64)[::step, ::step][np.asarray(m)[::step, ::step]]
                        for t, m in zip(targets, masks, strict=True)])
    use = np.isfinite(x) & np.isfinite(y) & (np.abs(y) > 0)
    scale = 1.0
    for _ in range(rounds):
        denominator = float(np.sum(x[use] * x[use]))
        if denominator <= 0:
            return 1.0
        scale = float(np.sum(x[use] * y[use]) / denominator)
        relative = np.abs(scale * x - y) / np.maximum(np.abs(y), 1e-12)
        sigma = max(1.4826 * float(np.median(relative[use])), 1e-6)
        updated = use & (relative <= cutoff * sigma)
        if updated.sum() < 10 or np.array_equal(updated, use):
            break
        use = updated
    return scale
