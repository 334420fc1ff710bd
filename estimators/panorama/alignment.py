"""Joint alignment of overlapping views' disparities (360MonoDepth-style deformable alignment).

Model. Each view i carries a coarse grid (g x g control points over the view, bilinearly
interpolated) of scale S_i and shift T_i. A relative estimator's output D_i (inverse
planar depth up to scale and shift) becomes inverse distance along the ray as

    aligned_i(p) = cos_i(p) * (S_i(p) * (D_i(p) - m_i) / n_i + T_i(p))

where cos_i is the cosine to the view's optical axis (1 / distance = cos / z), and m_i,
n_i the median and a robust spread of D_i, which keep the unknowns near 1 and make the
result independent of the scale and shift each view happened to get. A metric estimator's inverse
distance is only rescaled: aligned_i = S_i * D_i (no shift: metric errors are
multiplicative, and keeping T = 0 preserves metric units).

Solve. Wherever two views see the same equirect sample pixel, their aligned values
should agree; all such pairs, over all views at once, form a sparse linear least-squares
problem, plus smoothness terms on each grid (first and second differences for the
scale, so a grid only bends where the overlaps ask it to and linear ramps stay cheap;
strong first differences for the shift) and a tiny ridge on the shifts. Pair residuals
are reweighted a few times (Cauchy IRLS) so occlusion edges and estimator blunders do
not pull the fit; they are taken relative to the local disparity of the first, plain
solution, so near and far surfaces count alike.

Gauge. The overlaps fix everything but one global scale, set by an exact linear
constraint: a weighted mean of the views' scales is 1, each view weighted by how well
its overlaps observe its scale (the 10..90th percentile spread of its normalised values
there, floored at OBSERVABILITY_FLOOR of the best view's). A view looking straight at a
plane (the floor from the nadir view) sees constant inverse planar depth, so its scale
trades freely against its shift; with a plain mean(S) = 1 it could carry the whole
gauge while every other view shrinks to 0, which agrees with itself perfectly and beats
the truth as soon as the data hold blunders. The floor keeps such views from being
dropped altogether when blunders would rather silence them. Metric views have no shift
to trade against, so their gauge is the plain mean scale: metres are kept on average.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import scipy.sparse as sp

from .projection import View, footprint

Kind = Literal["relative-disparity", "metric-distance"]
KINDS: tuple[str, ...] = ("relative-disparity", "metric-distance")
# Least weight of a view in the gauge, relative to the best-observed view (see Gauge above).
OBSERVABILITY_FLOOR = 0.3
# Pull of every scale towards 1 (the normalised units), relative to the data: what settles
# the scale of a flat view, which its overlaps cannot observe.
SCALE_RIDGE = 1e-3
# Smallest robust scale of the relative pair residuals (see _Problem.weights_for).
SIGMA_FLOOR = 1e-3


@dataclass(frozen=True)
class Alignment:
    """Per-view correction grids found by `align_views`.

    `scale`, `shift`: float64 [N, g, g] control values (row-major: [view, row, col]);
    `centre`, `normaliser`: [N] each view's raw output is used as (raw - centre) / normaliser
    (its median and 2..98 percentile spread for relative kinds; 0 and 1 for metric), so
    the solution does not depend on the scale and shift the estimator happened to give;
    `residual_before` / `residual_after`: robust RMS of the overlap disagreement (relative
    to the local disparity) with per-view normalisation only, and after alignment;
    `pairs`: how many overlap pairs the solve used.
    """

    kind: str
    scale: np.ndarray
    shift: np.ndarray
    centre: np.ndarray
    normaliser: np.ndarray
    residual_before: float
    residual_after: float
    pairs: int

    def apply(self, disparities: list[np.ndarray], views: tuple[View, ...]) -> list[np.ndarray]:
        """Aligned inverse distance along the rays, float32 [h, w] per view."""
        out = []
        for i, (d, view) in enumerate(zip(disparities, views, strict=True)):
            s = _upsample_grid(self.scale[i], view.height, view.width)
            d = (np.asarray(d, dtype=np.float64) - self.centre[i]) / self.normaliser[i]
            if self.kind == "metric-distance":
                out.append((s * d).astype(np.float32))
            else:
                t = _upsample_grid(self.shift[i], view.height, view.width)
                out.append((view.cos_to_axis() * (s * d + t)).astype(np.float32))
        return out


def _interp_matrix(n: int, g: int) -> np.ndarray:
    """[n, g] bilinear weights of n pixel centres on g control points spanning the edges."""
    if g == 1:
        return np.ones((n, 1))
    pos = np.clip(((np.arange(n) + 0.5) / n) * (g - 1), 0.0, g - 1.0)  # control spacing
    i0 = np.minimum(np.floor(pos).astype(int), g - 2)
    f = pos - i0
    m = np.zeros((n, g))
    m[np.arange(n), i0] = 1.0 - f
    m[np.arange(n), i0 + 1] = f
    return m


def _upsample_grid(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    g = grid.shape[0]
    return _interp_matrix(height, g) @ grid @ _interp_matrix(width, g).T


def _grid_taps(a: np.ndarray, b: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray]:
    """Control indices [P, 4] (row * g + col) and bilinear weights [P, 4] at normalised (a, b)."""
    if g == 1:
        idx = np.zeros((a.size, 4), dtype=np.int64)
        w = np.zeros((a.size, 4))
        w[:, 0] = 1.0
        return idx, w
    ca = np.clip((a + 1.0) / 2.0 * (g - 1), 0.0, g - 1.0)
    cb = np.clip((b + 1.0) / 2.0 * (g - 1), 0.0, g - 1.0)
    i0 = np.minimum(np.floor(ca).astype(np.int64), g - 2)
    j0 = np.minimum(np.floor(cb).astype(np.int64), g - 2)
    fa = ca - i0
    fb = cb - j0
    idx = np.stack((j0 * g + i0, j0 * g + i0 + 1, (j0 + 1) * g + i0, (j0 + 1) * g + i0 + 1), axis=1)
    w = np.stack(((1 - fb) * (1 - fa), (1 - fb) * fa, fb * (1 - fa), fb * fa), axis=1)
    return idx, w


def _difference_rows(n_views: int, g: int, order: int) -> sp.csr_matrix:
    """First (order 1) or second (order 2) differences along the rows and columns of each grid."""
    stencil = [1.0, -1.0] if order == 1 else [1.0, -2.0, 1.0]
    span = len(stencil)
    rows, cols, vals = [], [], []
    r = 0
    for v in range(n_views):
        base = v * g * g
        for j in range(g):
            for i in range(g):
                for step, room in ((1, g - i), (g, g - j)):  # along a row, along a column
                    if room < span:
                        continue
                    for k, c in enumerate(stencil):
                        rows.append(r)
                        cols.append(base + j * g + i + k * step)
                        vals.append(c)
                    r += 1
    return sp.csr_matrix((vals, (rows, cols)), shape=(r, n_views * g * g))


# Pair levels (relative residuals) are floored at this share of their 90th percentile (_Problem.levels).
LEVEL_FLOOR = 0.05

def robust_spread(values: np.ndarray) -> float:
    """2nd..98th percentile range of finite values (1 where that is empty or zero)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    lo, hi = np.percentile(finite, [2.0, 98.0])
    spread = float(hi - lo)
    return spread if spread > 0 else max(float(np.abs(finite).max()), 1.0)


def _check_inputs(disparities, views, kind: str, grid: int, iterations: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown estimator kind {kind!r}; expected one of {', '.join(KINDS)}")
    if len(disparities) != len(views):
        raise ValueError(f"got {len(disparities)} disparity maps for {len(views)} views")
    if grid < 1:
        raise ValueError(f"alignment grid must have at least 1 control point per side, got {grid}")
    if iterations < 1:
        raise ValueError(f"alignment needs at least 1 iteration, got {iterations}")


def _normalised_maps(disparities, views, valid, metric: bool):
    """Each view's map and where it is usable, relative maps centred on their median and
    divided by their spread (so the solve is scale-free); (maps, centre, normaliser)."""
    n_views = len(views)
    maps = []
    normaliser = np.ones(n_views)
    centre = np.zeros(n_views)
    for i, (d, view) in enumerate(zip(disparities, views, strict=True)):
        d = np.asarray(d, dtype=np.float64)
        if d.shape != (view.height, view.width):
            raise ValueError(f"view {i}: disparity shape {d.shape} does not match the view's {(view.height, view.width)}")
        ok = np.isfinite(d) if valid is None else np.isfinite(d) & np.asarray(valid[i], dtype=bool)
        if not metric:
            normaliser[i] = robust_spread(d[ok])
            centre[i] = float(np.median(d[ok])) if ok.any() else 0.0
        maps.append((np.where(ok, d - centre[i], 0.0) / normaliser[i], ok))
    return maps, centre, normaliser


def align_views(
    disparities: list[np.ndarray],
    views: tuple[View, ...],
    *,
    kind: Kind = "relative-disparity",
    grid: int = 4,
    smoothness: float = 0.02,
    curvature: float = 0.2,
    shift_smoothness: float = 1.0,
    shift_ridge: float = 1e-3,
    sample_height: int = 64,
    iterations: int = 4,
    robust: bool = True,
    valid: list[np.ndarray] | None = None,
) -> Alignment:
    """Solve all views' correction grids jointly from their overlaps (see the module doc).

    `disparities`: per view [h, w]; for `relative-disparity` the estimator's inverse planar
    depth (up to scale and shift), for `metric-distance` inverse distance along the rays.
    `grid`: control points per side (1 = one scale and shift per view).
    `smoothness`, `curvature`: weights (relative to the data) of the first- and
    second-difference regularisers of the scale grids; curvature leaves linear ramps free.
    `shift_smoothness`: first-difference weight of the shift grids. It is high by default:
    a nearly constant shift per view is what the estimators' ambiguity is, and a bendy
    shift field is almost unobservable (any smooth global ray-disparity field h gives
    T_i = h / cos_i), so letting it bend only lets low-frequency errors in.
    `shift_ridge`: tiny pull of the shifts towards 0, for a well-posed system.
    `sample_height`: the overlap samples are taken on an equirect grid of this height.
    `iterations`: IRLS passes of each stage; `robust=False` solves plain least squares.
    `valid`: optional bool masks per view of pixels to use.
    """
    _check_inputs(disparities, views, kind, grid, iterations)
    n_views = len(views)
    metric = kind == "metric-distance"
    maps, centre, normaliser = _normalised_maps(disparities, views, valid, metric)

    def identity(g: int) -> Alignment:
        return Alignment(kind, np.ones((n_views, g, g)), np.zeros((n_views, g, g)), centre, normaliser, 0.0, 0.0, 0)

    samples = _overlap_samples(maps, views, max(8, int(sample_height)))
    if samples is None:
        return identity(grid)
    # Stage 1: one scale and shift per view. Residuals are taken relative to the local
    # disparity of the plain least-squares solution (so near and far surfaces count alike),
    # a level that then stays fixed: one that followed the solution would reward inflating it.
    coarse = _Problem(samples, n_views, 1, metric, smoothness, curvature, shift_smoothness, shift_ridge)
    x = coarse.solve(None, 1)
    level = coarse.levels(x)
    if robust:
        x, level = _robust_stage_one(coarse, samples, x, level, iterations)
    residual_before = _robust_rms(coarse.pairs @ coarse.identity() / coarse.levels(coarse.identity()))
    # What stage 1's fit down-weights (blunders) stays down-weighted when the grids may bend.
    stage_one = coarse.weights_for(x, level) * level**2
    prior = np.minimum(stage_one / np.median(stage_one), 1.0) if robust else None
    problem = coarse
    if grid > 1:
        # Stage 2: the grids. Each view is first re-centred on its own zero (the raw value
        # stage 1 maps to infinite distance), so that a spatially varying scale acts on
        # the disparity itself and the shift grid stays near 0, where it is regularised.
        if not metric:
            zero = -x[n_views:] / np.where(np.abs(x[:n_views]) > 1e-9, x[:n_views], 1.0)
            centre = centre + normaliser * zero
            samples = replace(samples, value=samples.value - zero[samples.view])
            x = np.r_[x[:n_views], np.zeros(n_views)]
        problem = _Problem(samples, n_views, grid, metric, smoothness, curvature, shift_smoothness, shift_ridge)
        start = problem.lift(x, coarse)
        # Residuals relative to stage 1's disparity; the seed weights down-weight blunders
        # before the grids can bend to them.
        if robust:
            x = problem.solve(problem.weights_for(start, level), iterations, level, prior=prior)
        else:
            x = problem.solve(1.0 / level**2, 1)
    residual_after = _robust_rms(problem.pairs @ x / level)
    n_scale = n_views * grid * grid
    scale = x[:n_scale].reshape(n_views, grid, grid)
    shift = np.zeros_like(scale) if metric else x[n_scale:].reshape(n_views, grid, grid)
    return Alignment(kind, scale, shift, centre, normaliser, residual_before, residual_after, problem.n_pairs)


@dataclass(frozen=True)
class _Samples:
    """Overlap samples: per entry (view, equirect sample pixel), sorted by pixel, and the pairs
    of entries (`first`, `second`) that see the same pixel."""

    view: np.ndarray
    value: np.ndarray
    cos: np.ndarray
    a: np.ndarray
    b: np.ndarray
    first: np.ndarray
    second: np.ndarray
    observability: np.ndarray


def _overlap_samples(maps, views: tuple[View, ...], sample_h: int) -> _Samples | None:
    sample_w = 2 * sample_h
    parts = []
    for i, (view, (d, ok)) in enumerate(zip(views, maps, strict=True)):
        fp = footprint(view, sample_h, sample_w)
        sub = fp.subset((np.abs(fp.a) < 0.98) & (np.abs(fp.b) < 0.98))
        if sub.pixels.size == 0:
            continue
        good = sub.sample(ok.astype(np.float32)) > 0.999
        value = sub.sample(d)[good].astype(np.float64)
        cos = sub.sample(view.cos_to_axis())[good].astype(np.float64)
        a, b = sub.a[good], sub.b[good]
        parts.append((sub.pixels[good], np.full(value.size, i), value, cos, a, b))
    if not parts:
        return None
    pix, view, value, cos, a, b = (np.concatenate(col) for col in zip(*parts, strict=True))
    order = np.argsort(pix, kind="stable")
    pix = pix[order]
    # The views seeing one pixel are paired as a ring (1-2, 2-3, ..., k-1): k pairs tie
    # all k together, where all k (k - 1) / 2 pairs would cost far more for ico views.
    _, starts, counts = np.unique(pix, return_index=True, return_counts=True)
    chained = np.flatnonzero(pix[:-1] == pix[1:])
    ring = counts >= 3
    first = np.concatenate((chained, starts[ring]))
    second = np.concatenate((chained + 1, starts[ring] + counts[ring] - 1))
    if first.size == 0:
        return None
    view = view[order]
    value = value[order]
    observability = np.zeros(len(views))
    for v in range(len(views)):
        mine = value[view == v]
        if mine.size:
            lo, hi = np.percentile(mine, [10.0, 90.0])
            observability[v] = hi - lo
    if not observability.any():
        observability[:] = 1.0
    observability = np.maximum(observability, OBSERVABILITY_FLOOR * observability.max())
    return _Samples(
        view, value, cos[order], a[order].astype(np.float64), b[order].astype(np.float64),
        first, second, observability,
    )


class _Problem:
    """The sparse least-squares system for one grid size."""

    def __init__(self, samples: _Samples, n_views, grid, metric, smoothness, curvature, shift_smoothness, shift_ridge):
        self.n_views, self.grid, self.metric = n_views, grid, metric
        g2 = grid * grid
        self.n_scale = n_views * g2
        self.n_unknowns = self.n_scale if metric else 2 * self.n_scale
        cidx, cw = _grid_taps(samples.a, samples.b, grid)
        cidx = cidx + (samples.view * g2)[:, None]
        if metric:
            cols, vals = cidx, cw * samples.value[:, None]
        else:
            cols = np.concatenate((cidx, cidx + self.n_scale), axis=1)
            vals = np.concatenate((cw * (samples.cos * samples.value)[:, None], cw * samples.cos[:, None]), axis=1)
        n_entries = samples.value.size
        design = sp.csr_matrix(
            (vals.ravel(), (np.repeat(np.arange(n_entries), cols.shape[1]), cols.ravel())),
            shape=(n_entries, self.n_unknowns),
        )
        self.design_first = design[samples.first]
        self.design_second = design[samples.second]
        self.pairs = (self.design_first - self.design_second).tocsr()
        self.n_pairs = self.pairs.shape[0]
        self._pairs_transposed = self.pairs.T.tocsr()
        self._row_entries = np.diff(self.pairs.indptr)

        # Regulariser, scaled with the number of pairs so its strength does not depend on
        # how densely the overlaps are sampled.
        per_field = self.n_pairs / max(self.n_scale, 1)
        reg = sp.csr_matrix((self.n_unknowns, self.n_unknowns))
        terms = [(0, 1, smoothness), (0, 2, curvature)]
        if not metric:
            terms += [(self.n_scale, 1, shift_smoothness), (self.n_scale, 2, curvature)]
        for off, order, weight in terms:
            diff = _difference_rows(n_views, grid, order)
            if diff.shape[0] == 0 or weight <= 0:
                continue
            block = (diff.T @ diff) * (weight**2 * per_field)
            embed = sp.eye(self.n_scale, self.n_unknowns, k=off, format="csr")
            reg = reg + (embed.T @ block @ embed)
        if not metric:
            reg = reg + sp.diags(np.r_[np.zeros(self.n_scale), np.full(self.n_scale, shift_ridge**2 * per_field)])
        self.regulariser = reg
        self._regulariser_dense = reg.toarray()
        # A view that shares no valid pixel with any other (one that sees only sky, say) has
        # nothing to align it: it is held at the identity and kept out of the gauge.
        seen = np.zeros(n_views, bool)
        seen[samples.view[samples.first]] = True
        seen[samples.view[samples.second]] = True
        unseen = np.repeat(~seen, g2).astype(np.float64)
        self.anchor = np.r_[unseen, unseen if not metric else np.zeros(0)] * max(per_field, 1.0)
        self.anchor[: self.n_scale] += SCALE_RIDGE**2 * per_field
        # Gauge: the views' mean scale, each view weighted by how well its overlaps
        # observe its scale (see observability).
        view_weight = np.repeat((np.ones(n_views) if metric else samples.observability) * seen, g2)
        self.gauge = np.r_[view_weight / view_weight.sum(), np.zeros(self.n_unknowns - self.n_scale)]

    def identity(self) -> np.ndarray:
        return np.r_[np.ones(self.n_scale), np.zeros(self.n_unknowns - self.n_scale)]

    def lift(self, x_coarse: np.ndarray, coarse: _Problem) -> np.ndarray:
        """A per-view (grid 1) solution expressed on this problem's grid."""
        g2 = self.grid * self.grid
        scale = np.repeat(x_coarse[: coarse.n_scale], g2)
        shift = np.repeat(x_coarse[coarse.n_scale :], g2)
        return np.r_[scale, shift]

    def levels(self, x: np.ndarray) -> np.ndarray:
        """Each pair's aligned disparity (mean of the two views), floored at 5% of its 90th percentile.

        Not of the median: where most pairs lie in the sky or the far field (near 0), a floor
        from the median would let those pairs outweigh the near ground a million-fold."""
        level = 0.5 * np.abs(self.design_first @ x + self.design_second @ x)
        return np.maximum(level, max(LEVEL_FLOOR * float(np.percentile(level, 90)), 1e-12))

    def weights_for(self, x: np.ndarray, level: np.ndarray | None, tolerance: float = 3.0) -> np.ndarray:
        """Cauchy IRLS weights of the residuals relative to a fixed `level` (None: absolute).

        The level must not follow the current solution: dividing by it would reward
        inflating the disparities, and the solve would drift towards constant maps. The
        robust scale is floored at 0.1% (relative): with noiseless inliers it would shrink
        towards 0, every tiny misfit would count as an outlier, and views would be cut
        loose one by one until all but one collapse.
        """
        level = np.ones(self.n_pairs) if level is None else level
        rel = (self.pairs @ x) / level
        sigma = max(1.4826 * float(np.median(np.abs(rel))), SIGMA_FLOOR)
        weights = 1.0 / (level**2 * (1.0 + (rel / (tolerance * sigma)) ** 2))
        return weights * (self.n_pairs / weights.sum())

    def solve(
        self, weights: np.ndarray | None, iterations: int, level: np.ndarray | None = None,
        prior: np.ndarray | None = None,
    ) -> np.ndarray:
        """IRLS: minimise the weighted pair residuals + regulariser with mean(scale) = 1.

        `prior`: per-pair factors every iteration's weights are multiplied by (what an
        earlier stage found to be blunders stays down-weighted)."""
        weights = np.ones(self.n_pairs) if weights is None else weights
        prior = np.ones(self.n_pairs) if prior is None else prior
        weights = weights * prior
        u = self.n_unknowns
        rhs = np.zeros(u + 1)
        rhs[:u] = self.anchor * self.identity()
        rhs[-1] = 1.0
        # The KKT system is small (unknowns: views x grid^2 x 2, whatever the frame size): solved
        # dense, as device.alignment does; scipy's sparse objects cost more than the solve here.
        kkt = np.zeros((u + 1, u + 1))
        kkt[:u, u] = kkt[u, :u] = self.gauge
        diagonal = np.arange(u)
        x = self.identity()
        for it in range(iterations):
            if it > 0:
                weights = self.weights_for(x, level) * prior
            weighted = self.pairs.copy()
            weighted.data *= np.repeat(weights, self._row_entries)
            kkt[:u, :u] = (self._pairs_transposed @ weighted).toarray() + self._regulariser_dense
            kkt[diagonal, diagonal] += self.anchor
            try:
                x = np.linalg.solve(kkt, rhs)[:u]
            except np.linalg.LinAlgError:
                x = np.full(u, np.nan)
            if not np.all(np.isfinite(x)):
                raise ValueError("view alignment failed: the overlap system is singular (do the views overlap?)")
        return x


def _robust_stage_one(coarse: _Problem, samples: _Samples, x: np.ndarray, level: np.ndarray,
                      iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """IRLS from the least-squares start and from the robust start (`_robust_start`); the
    solution whose median relative residual is smaller, and its levels."""
    candidates = []
    for start in (x, _robust_start(coarse, samples, x, level)):  # the robust start may equal x
        start_level = coarse.levels(start)
        solved = coarse.solve(coarse.weights_for(start, start_level), iterations, start_level)
        solved_level = coarse.levels(solved)
        candidates.append((float(np.median(np.abs(coarse.pairs @ solved) / solved_level)), solved, solved_level))
    _, x, level = min(candidates, key=lambda candidate: candidate[0])
    return x, level


def _pair_views(problem: _Problem, samples: _Samples) -> tuple[np.ndarray, np.ndarray]:
    return samples.view[samples.first], samples.view[samples.second]


def _without_view(problem: _Problem, samples: _Samples, view: int, level: np.ndarray) -> tuple[np.ndarray, float]:
    """Least squares with every pair of `view` left out (its unknowns held at the identity):
    the solution and the robust RMS of the remaining pairs' relative residuals."""
    first, second = _pair_views(problem, samples)
    kept = (first != view) & (second != view)
    saved = problem.anchor.copy()
    g2 = problem.grid * problem.grid
    problem.anchor[view * g2:(view + 1) * g2] = max(float(problem.anchor.max()), 1.0)
    if not problem.metric:
        problem.anchor[problem.n_scale + view * g2:problem.n_scale + (view + 1) * g2] = problem.anchor[view * g2]
    try:
        x = problem.solve(kept / level**2, 1)
    finally:
        problem.anchor[:] = saved
    return x, _robust_rms((problem.pairs @ x / level)[kept])


def _robust_start(problem: _Problem, samples: _Samples, x: np.ndarray, level: np.ndarray) -> np.ndarray:
    """A start that one view disagreeing with all its neighbours cannot drag (issue 12).

    If leaving one view's pairs out makes the others agree several times better, that view
    is solved last, against the others held fixed, with its worst-fitting half of pairs
    left out; the IRLS that follows starts from there and down-weights what still disagrees.
    """
    first, second = _pair_views(problem, samples)
    views = np.unique(np.r_[first, second])
    if views.size < 3:
        return x
    everyone = _robust_rms(problem.pairs @ x / level)
    trials = [_without_view(problem, samples, int(v), level) for v in views]
    best = int(np.argmin([rms for _, rms in trials]))
    if not trials[best][1] < 0.3 * everyone:
        return x
    view, x = int(views[best]), trials[best][0]
    mine = (first == view) | (second == view)
    for keep in (100.0, 50.0, 50.0):  # the view's own unknowns only: the others stay as solved
        relative = np.abs(problem.pairs @ x / level)
        use = mine & (relative <= np.percentile(relative[mine], keep))
        x = _solve_one_view(problem, x, view, use / level**2)
    return x


def _solve_one_view(problem: _Problem, x: np.ndarray, view: int, weights: np.ndarray) -> np.ndarray:
    """`x` with only `view`'s unknowns re-solved by weighted least squares (+ its regulariser)."""
    g2 = problem.grid * problem.grid
    mine = np.r_[np.arange(view * g2, (view + 1) * g2)]
    if not problem.metric:
        mine = np.r_[mine, problem.n_scale + mine]
    others = np.setdiff1d(np.arange(problem.n_unknowns), mine)
    a = problem.pairs[:, mine]
    b = -(problem.pairs[:, others] @ x[others])
    normal = (a.T @ sp.diags(weights) @ a + problem.regulariser[mine][:, mine]).toarray()
    rhs = a.T @ (weights * b)
    x = x.copy()
    x[mine] = np.linalg.lstsq(normal, rhs, rcond=None)[0]
    return x


def _robust_rms(residuals: np.ndarray) -> float:
    """RMS of the residuals below their 95th absolute percentile (occlusion edges left out)."""
    if residuals.size == 0:
        return 0.0
    r = np.abs(residuals)
    r = r[r <= np.percentile(r, 95.0)]
    return float(np.sqrt(np.mean(r * r))) if r.size else 0.0
