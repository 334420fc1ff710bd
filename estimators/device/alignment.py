"""The joint alignment of views (panorama.alignment) with its normal equations on a torch device.

The same model, stages, gauge, regularisers, IRLS weights and robust start as the numpy
reference, step for step (see panorama/alignment.py for what each one is for); only the
linear algebra moved. The reference builds a sparse pair matrix P and solves its KKT system
with SuperLU; here every overlap pair keeps its 16 (metric: 8) coefficients and columns,
their outer products are precomputed once per problem, and each IRLS solve assembles the
dense normal matrix P^T W P with one `index_add_` and solves the small dense KKT system
(at most 2 x 20 views x 16 control points + 1 unknowns) with `torch.linalg.solve`, all in
float64 on the device. Which entries pair with which (a purely geometric question, given the
views' valid masks) is worked out on the host with the reference's own numpy code, so the
pairs are the reference's, in its order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..panorama.alignment import (
    KINDS,
    LEVEL_FLOOR,
    OBSERVABILITY_FLOOR,
    SCALE_RIDGE,
    SIGMA_FLOOR,
    Alignment,
)
from ..panorama.projection import View
from . import stats
from .blending import read_views
from .geometry import overlap_geometry, view_cosines

F64 = torch.float64


@dataclass(frozen=True)
class Samples:
    """alignment._Samples on the device: entries sorted by sample pixel, and the pairs."""

    view: torch.Tensor
    value: torch.Tensor
    cos: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    first: torch.Tensor
    second: torch.Tensor
    observability: np.ndarray
    view_host: np.ndarray
    first_host: np.ndarray
    second_host: np.ndarray


def robust_spread_and_median(values: torch.Tensor, with_median: bool) -> tuple[float, float]:
    """(alignment.robust_spread, np.median) of a 1-D float64 tensor of finite values."""
    if values.numel() == 0:
        return 1.0, 0.0
    low, high = stats.percentiles(values, [2.0, 98.0])
    spread = float(high - low)
    if not spread > 0:
        spread = max(float(values.abs().max().item()), 1.0)
    return spread, (stats.median(values) if with_median else 0.0)


def normalised_maps(disparities: torch.Tensor, valid: torch.Tensor | None, metric: bool):
    """alignment._normalised_maps: (maps float64 [V, h, w], ok [V, h, w], centre [V], normaliser [V])."""
    d = disparities.to(F64)
    ok = torch.isfinite(d) if valid is None else torch.isfinite(d) & valid
    n_views = d.shape[0]
    centre, normaliser = np.zeros(n_views), np.ones(n_views)
    if not metric:
        for i in range(n_views):
            normaliser[i], centre[i] = robust_spread_and_median(d[i][ok[i]], True)
    shift = torch.from_numpy(centre).to(d.device)[:, None, None]
    scale = torch.from_numpy(normaliser).to(d.device)[:, None, None]
    maps = torch.where(ok, d - shift, torch.zeros((), dtype=F64, device=d.device)) / scale
    return maps, ok, centre, normaliser


def overlap_samples(maps: torch.Tensor, ok: torch.Tensor, views: tuple[View, ...], sample_h: int) -> Samples | None:
    """alignment._overlap_samples: each view's valid samples, sorted by pixel, and their pairs."""
    geo = overlap_geometry(views, sample_h, maps.device)
    source = torch.stack((ok.to(torch.float32), maps.to(torch.float32),
                          view_cosines(views, maps.device).to(torch.float32)))  # [3, V, h, w]
    sampled = read_views(geo.reads, geo.source_pad, source)  # [3, V * longest]
    good = (sampled[0] > 0.999).cpu().numpy()
    parts, flat = [], []
    for i, count in enumerate(geo.reads.counts):
        keep = good[i * geo.reads.longest:i * geo.reads.longest + count]
        if count and keep.any():
            parts.append((geo.pixels[i][keep], np.full(int(keep.sum()), i), geo.a[i][keep], geo.b[i][keep]))
            flat.append(i * geo.reads.longest + np.flatnonzero(keep))
    if not parts:
        return None
    pix, view, a, b = (np.concatenate(col) for col in zip(*parts, strict=True))
    order = np.argsort(pix, kind="stable")
    first, second = _pairs(pix[order])
    if first.size == 0:
        return None
    index = torch.from_numpy(np.concatenate(flat)[order]).to(maps.device)
    value = sampled[1][index].to(F64)
    cos = sampled[2][index].to(F64)
    view = view[order]
    device = maps.device
    return Samples(
        torch.from_numpy(view).to(device), value, cos, torch.from_numpy(a[order].astype(np.float64)).to(device),
        torch.from_numpy(b[order].astype(np.float64)).to(device), torch.from_numpy(first).to(device),
        torch.from_numpy(second).to(device), _observability(value, view, len(views)), view, first, second,
    )


def _pairs(pix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference's pairing of entries sorted by pixel: consecutive ones, and rings of 3 or more."""
    _, starts, counts = np.unique(pix, return_index=True, return_counts=True)
    chained = np.flatnonzero(pix[:-1] == pix[1:])
    ring = counts >= 3
    first = np.concatenate((chained, starts[ring]))
    second = np.concatenate((chained + 1, starts[ring] + counts[ring] - 1))
    return first, second


def _observability(value: torch.Tensor, view: np.ndarray, n_views: int) -> np.ndarray:
    observability = np.zeros(n_views)
    view_tensor = torch.from_numpy(view).to(value.device)
    for v in np.unique(view):
        low, high = stats.percentiles(value[view_tensor == int(v)], [10.0, 90.0])
        observability[v] = high - low
    if not observability.any():
        observability[:] = 1.0
    return np.maximum(observability, OBSERVABILITY_FLOOR * observability.max())


def grid_taps(a: torch.Tensor, b: torch.Tensor, g: int) -> tuple[torch.Tensor, torch.Tensor]:
    """alignment._grid_taps: control indices [P, 4] and bilinear weights [P, 4] (one tap for g = 1)."""
    if g == 1:
        return torch.zeros((a.numel(), 1), dtype=torch.long, device=a.device), torch.ones((a.numel(), 1), dtype=F64,
                                                                                        device=a.device)
    ca = torch.clamp((a + 1.0) / 2.0 * (g - 1), 0.0, g - 1.0)
    cb = torch.clamp((b + 1.0) / 2.0 * (g - 1), 0.0, g - 1.0)
    i0 = torch.clamp(torch.floor(ca).long(), max=g - 2)
    j0 = torch.clamp(torch.floor(cb).long(), max=g - 2)
    fa, fb = ca - i0, cb - j0
    idx = torch.stack((j0 * g + i0, j0 * g + i0 + 1, (j0 + 1) * g + i0, (j0 + 1) * g + i0 + 1), dim=1)
    w = torch.stack(((1 - fb) * (1 - fa), (1 - fb) * fa, fb * (1 - fa), fb * fa), dim=1)
    return idx, w


def difference_rows(n_views: int, g: int, order: int) -> np.ndarray:
    """alignment._difference_rows as a dense float64 [R, n_views * g * g] array."""
    stencil = [1.0, -1.0] if order == 1 else [1.0, -2.0, 1.0]
    rows = []
    for v in range(n_views):
        base = v * g * g
        for j in range(g):
            for i in range(g):
                for step, room in ((1, g - i), (g, g - j)):
                    if room < len(stencil):
                        continue
                    row = np.zeros(n_views * g * g)
                    for k, c in enumerate(stencil):
                        row[base + j * g + i + k * step] += c
                    rows.append(row)
    return np.array(rows).reshape(len(rows), n_views * g * g)


def robust_rms(residuals: torch.Tensor) -> float:
    """alignment._robust_rms: RMS of the residuals below their 95th absolute percentile."""
    if residuals.numel() == 0:
        return 0.0
    r = residuals.abs()
    r = r[r <= float(stats.percentiles(r, [95.0])[0])]
    return float(torch.sqrt(torch.mean(r * r)).item()) if r.numel() else 0.0


class Problem:
    """alignment._Problem on the device: pair coefficients, regulariser, anchor and gauge."""

    def __init__(self, samples: Samples, n_views: int, grid: int, metric: bool, smoothness: float,
                 curvature: float, shift_smoothness: float, shift_ridge: float):
        self.n_views, self.grid, self.metric = n_views, grid, metric
        device = samples.value.device
        g2 = grid * grid
        self.n_scale = n_views * g2
        self.n_unknowns = self.n_scale if metric else 2 * self.n_scale
        cidx, cw = grid_taps(samples.a, samples.b, grid)
        cidx = cidx + (samples.view * g2)[:, None]
        if metric:
            cols, vals = cidx, cw * samples.value[:, None]
        else:
            cols = torch.cat((cidx, cidx + self.n_scale), dim=1)
            vals = torch.cat((cw * (samples.cos * samples.value)[:, None], cw * samples.cos[:, None]), dim=1)
        self.cols_first, self.vals_first = cols[samples.first], vals[samples.first]
        self.cols_second, self.vals_second = cols[samples.second], vals[samples.second]
        self.pair_cols = torch.cat((self.cols_first, self.cols_second), dim=1)
        self.pair_vals = torch.cat((self.vals_first, -self.vals_second), dim=1)
        self.n_pairs = int(samples.first.numel())
        # The normal matrix is sum_p w_p r_p r_p^T: each pair's outer product, once.
        u = self.n_unknowns
        self.outer_index = (self.pair_cols[:, :, None] * u + self.pair_cols[:, None, :]).reshape(-1)
        self.outer_values = (self.pair_vals[:, :, None] * self.pair_vals[:, None, :]).reshape(self.n_pairs, -1)
        per_field = self.n_pairs / max(self.n_scale, 1)
        self.regulariser = torch.from_numpy(
            self._regulariser(per_field, smoothness, curvature, shift_smoothness, shift_ridge)).to(device)
        seen = np.zeros(n_views, bool)
        seen[samples.view_host[samples.first_host]] = True
        seen[samples.view_host[samples.second_host]] = True
        unseen = np.repeat(~seen, g2).astype(np.float64)
        anchor = np.r_[unseen, unseen if not metric else np.zeros(0)] * max(per_field, 1.0)
        anchor[: self.n_scale] += SCALE_RIDGE**2 * per_field
        self.anchor = torch.from_numpy(anchor).to(device)
        view_weight = np.repeat((np.ones(n_views) if metric else samples.observability) * seen, g2)
        gauge = np.r_[view_weight / view_weight.sum(), np.zeros(self.n_unknowns - self.n_scale)]
        self.gauge = torch.from_numpy(gauge).to(device)

    def _regulariser(self, per_field: float, smoothness: float, curvature: float, shift_smoothness: float,
                     shift_ridge: float) -> np.ndarray:
        reg = np.zeros((self.n_unknowns, self.n_unknowns))
        terms = [(0, 1, smoothness), (0, 2, curvature)]
        if not self.metric:
            terms += [(self.n_scale, 1, shift_smoothness), (self.n_scale, 2, curvature)]
        for off, order, weight in terms:
            diff = difference_rows(self.n_views, self.grid, order)
            if diff.shape[0] == 0 or weight <= 0:
                continue
            block = (diff.T @ diff) * (weight**2 * per_field)
            reg[off:off + self.n_scale, off:off + self.n_scale] += block
        if not self.metric:
            reg[np.arange(self.n_scale, self.n_unknowns), np.arange(self.n_scale, self.n_unknowns)] += (
                shift_ridge**2 * per_field)
        return reg

    def pairs_times(self, x: torch.Tensor) -> torch.Tensor:
        """P @ x: each pair's disagreement."""
        return (self.pair_vals * x[self.pair_cols]).sum(dim=1)

    def identity(self) -> torch.Tensor:
        x = torch.zeros(self.n_unknowns, dtype=F64, device=self.anchor.device)
        x[: self.n_scale] = 1.0
        return x

    def lift(self, x_coarse: torch.Tensor, coarse: Problem) -> torch.Tensor:
        g2 = self.grid * self.grid
        return torch.cat((torch.repeat_interleave(x_coarse[: coarse.n_scale], g2),
                          torch.repeat_interleave(x_coarse[coarse.n_scale:], g2)))

    def levels(self, x: torch.Tensor) -> torch.Tensor:
        first = (self.vals_first * x[self.cols_first]).sum(dim=1)
        second = (self.vals_second * x[self.cols_second]).sum(dim=1)
        level = 0.5 * torch.abs(first + second)
        return torch.clamp(level, min=max(LEVEL_FLOOR * float(stats.percentiles(level, [90.0])[0]), 1e-12))

    def weights_for(self, x: torch.Tensor, level: torch.Tensor | None, tolerance: float = 3.0) -> torch.Tensor:
        level = torch.ones(self.n_pairs, dtype=F64, device=x.device) if level is None else level
        rel = self.pairs_times(x) / level
        sigma = max(1.4826 * stats.median(torch.abs(rel)), SIGMA_FLOOR)
        weights = 1.0 / (level**2 * (1.0 + (rel / (tolerance * sigma)) ** 2))
        return weights * (self.n_pairs / weights.sum())

    def normal(self, weights: torch.Tensor) -> torch.Tensor:
        """P^T diag(weights) P + regulariser + diag(anchor), dense [U, U]."""
        u = self.n_unknowns
        flat = torch.zeros(u * u, dtype=F64, device=weights.device)
        flat.index_add_(0, self.outer_index, (self.outer_values * weights[:, None]).reshape(-1))
        return flat.reshape(u, u) + self.regulariser + torch.diag(self.anchor)

    def solve(self, weights: torch.Tensor | None, iterations: int, level: torch.Tensor | None = None,
              prior: torch.Tensor | None = None) -> torch.Tensor:
        """IRLS with the gauge as an exact constraint (alignment._Problem.solve)."""
        device = self.anchor.device
        weights = torch.ones(self.n_pairs, dtype=F64, device=device) if weights is None else weights
        prior = torch.ones(self.n_pairs, dtype=F64, device=device) if prior is None else prior
        weights = weights * prior
        u = self.n_unknowns
        rhs = torch.zeros(u + 1, dtype=F64, device=device)
        rhs[:u] = self.anchor * self.identity()
        rhs[-1] = 1.0
        x = self.identity()
        for it in range(iterations):
            if it > 0:
                weights = self.weights_for(x, level) * prior
            kkt = torch.zeros((u + 1, u + 1), dtype=F64, device=device)
            kkt[:u, :u] = self.normal(weights)
            kkt[:u, u] = self.gauge
            kkt[u, :u] = self.gauge
            try:
                x = torch.linalg.solve(kkt, rhs)[:u]
            except torch.linalg.LinAlgError:
                x = torch.full((u,), float("nan"), dtype=F64, device=device)
            if not bool(torch.isfinite(x).all()):
                raise ValueError("view alignment failed: the overlap system is singular (do the views overlap?)")
        return x


def _robust_stage_one(coarse: Problem, samples: Samples, x: torch.Tensor, level: torch.Tensor,
                      iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """alignment._robust_stage_one: IRLS from the least-squares and the robust start; the better."""
    candidates = []
    for start in (x, _robust_start(coarse, samples, x, level)):
        start_level = coarse.levels(start)
        solved = coarse.solve(coarse.weights_for(start, start_level), iterations, start_level)
        solved_level = coarse.levels(solved)
        candidates.append((stats.median(torch.abs(coarse.pairs_times(solved)) / solved_level), solved, solved_level))
    _, x, level = min(candidates, key=lambda candidate: candidate[0])
    return x, level


def _without_view(problem: Problem, samples: Samples, view: int, level: torch.Tensor) -> tuple[torch.Tensor, float]:
    """alignment._without_view: least squares with `view`'s pairs left out (held at the identity)."""
    kept = (samples.view[samples.first] != view) & (samples.view[samples.second] != view)
    saved = problem.anchor.clone()
    g2 = problem.grid * problem.grid
    problem.anchor[view * g2:(view + 1) * g2] = max(float(problem.anchor.max().item()), 1.0)
    if not problem.metric:
        problem.anchor[problem.n_scale + view * g2:problem.n_scale + (view + 1) * g2] = problem.anchor[view * g2]
    try:
        x = problem.solve(kept.to(F64) / level**2, 1)
    finally:
        problem.anchor.copy_(saved)
    return x, robust_rms((problem.pairs_times(x) / level)[kept])


def _robust_start(problem: Problem, samples: Samples, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """alignment._robust_start: a start one view disagreeing with all its neighbours cannot drag."""
    first, second = samples.view[samples.first], samples.view[samples.second]
    views = np.unique(np.r_[samples.view_host[samples.first_host], samples.view_host[samples.second_host]])
    if views.size < 3:
        return x
    everyone = robust_rms(problem.pairs_times(x) / level)
    trials = [_without_view(problem, samples, int(v), level) for v in views]
    best = int(np.argmin([rms for _, rms in trials]))
    if not trials[best][1] < 0.3 * everyone:
        return x
    view, x = int(views[best]), trials[best][0]
    mine = (first == view) | (second == view)
    for keep in (100.0, 50.0, 50.0):
        relative = torch.abs(problem.pairs_times(x) / level)
        limit = float(stats.percentiles(relative[mine], [keep])[0])
        use = mine & (relative <= limit)
        x = _solve_one_view(problem, x, view, use.to(F64) / level**2)
    return x


def _solve_one_view(problem: Problem, x: torch.Tensor, view: int, weights: torch.Tensor) -> torch.Tensor:
    """alignment._solve_one_view: only `view`'s unknowns re-solved by weighted least squares."""
    g2 = problem.grid * problem.grid
    mine = np.arange(view * g2, (view + 1) * g2)
    if not problem.metric:
        mine = np.r_[mine, problem.n_scale + mine]
    device = x.device
    local = torch.full((problem.n_unknowns,), -1, dtype=torch.long, device=device)
    local[torch.from_numpy(mine).to(device)] = torch.arange(mine.size, device=device)
    where = local[problem.pair_cols]
    ours = where >= 0
    a = torch.zeros((problem.n_pairs, mine.size), dtype=F64, device=device)
    a.scatter_add_(1, torch.where(ours, where, 0), torch.where(ours, problem.pair_vals, 0.0))
    mine_t = torch.from_numpy(mine).to(device)
    b = -(problem.pairs_times(x) - a @ x[mine_t])
    normal = a.T @ (weights[:, None] * a) + problem.regulariser[mine_t][:, mine_t]
    rhs = a.T @ (weights * b)
    x = x.clone()
    rtol = torch.finfo(F64).eps * mine.size
    x[mine_t] = torch.linalg.pinv(normal, rtol=rtol, hermitian=True) @ rhs
    return x


@dataclass(frozen=True)
class AlignOptions:
    """align_views' knobs (panorama.alignment.align_views documents each)."""

    grid: int = 4
    smoothness: float = 0.02
    curvature: float = 0.2
    shift_smoothness: float = 1.0
    shift_ridge: float = 1e-3
    sample_height: int = 64
    iterations: int = 4
    robust: bool = True


def align_views(disparities: torch.Tensor, views: tuple[View, ...], *, kind: str = "relative-disparity",
                valid: torch.Tensor | None = None, **options) -> Alignment:
    """panorama.alignment.align_views on a device: disparities [V, h, w] (NaN where none)."""
    opts = AlignOptions(**options)
    if kind not in KINDS:
        raise ValueError(f"unknown estimator kind {kind!r}; expected one of {', '.join(KINDS)}")
    if disparities.shape[0] != len(views):
        raise ValueError(f"got {disparities.shape[0]} disparity maps for {len(views)} views")
    if opts.grid < 1:
        raise ValueError(f"alignment grid must have at least 1 control point per side, got {opts.grid}")
    if opts.iterations < 1:
        raise ValueError(f"alignment needs at least 1 iteration, got {opts.iterations}")
    metric = kind == "metric-distance"
    maps, ok, centre, normaliser = normalised_maps(disparities, valid, metric)
    samples = overlap_samples(maps, ok, tuple(views), max(8, int(opts.sample_height)))
    n_views = len(views)
    if samples is None:
        ones, zeros = np.ones((n_views, opts.grid, opts.grid)), np.zeros((n_views, opts.grid, opts.grid))
        return Alignment(kind, ones, zeros, centre, normaliser, 0.0, 0.0, 0)
    return _solve_stages(samples, n_views, metric, kind, centre, normaliser, opts)


def _solve_stages(samples: Samples, n_views: int, metric: bool, kind: str, centre: np.ndarray,
                  normaliser: np.ndarray, opts: AlignOptions) -> Alignment:
    """Stage 1 (a scale and shift per view), then stage 2 (the grids), as align_views does."""
    terms = (opts.smoothness, opts.curvature, opts.shift_smoothness, opts.shift_ridge)
    coarse = Problem(samples, n_views, 1, metric, *terms)
    x = coarse.solve(None, 1)
    level = coarse.levels(x)
    if opts.robust:
        x, level = _robust_stage_one(coarse, samples, x, level, opts.iterations)
    residual_before = robust_rms(coarse.pairs_times(coarse.identity()) / coarse.levels(coarse.identity()))
    stage_one = coarse.weights_for(x, level) * level**2
    prior = torch.clamp(stage_one / stats.median(stage_one), max=1.0) if opts.robust else None
    problem = coarse
    if opts.grid > 1:
        if not metric:
            host = x.cpu().numpy()
            zero = -host[n_views:] / np.where(np.abs(host[:n_views]) > 1e-9, host[:n_views], 1.0)
            centre = centre + normaliser * zero
            samples = replace(samples, value=samples.value - torch.from_numpy(zero).to(x.device)[samples.view])
            x = torch.cat((x[:n_views], torch.zeros(n_views, dtype=F64, device=x.device)))
        problem = Problem(samples, n_views, opts.grid, metric, *terms)
        start = problem.lift(x, coarse)
        if opts.robust:
            x = problem.solve(problem.weights_for(start, level), opts.iterations, level, prior=prior)
        else:
            x = problem.solve(1.0 / level**2, 1)
    residual_after = robust_rms(problem.pairs_times(x) / level)
    n_scale = n_views * opts.grid * opts.grid
    host = x.cpu().numpy()
    scale = host[:n_scale].reshape(n_views, opts.grid, opts.grid)
    shift = np.zeros_like(scale) if metric else host[n_scale:].reshape(n_views, opts.grid, opts.grid)
    return Alignment(kind, scale, shift, centre, normaliser, residual_before, residual_after, problem.n_pairs)


def _interp_matrix(n: int, g: int) -> np.ndarray:
    """alignment._interp_matrix: [n, g] bilinear weights of n pixel centres on g control points."""
    if g == 1:
        return np.ones((n, 1))
    pos = np.clip(((np.arange(n) + 0.5) / n) * (g - 1), 0.0, g - 1.0)
    i0 = np.minimum(np.floor(pos).astype(int), g - 2)
    f = pos - i0
    m = np.zeros((n, g))
    m[np.arange(n), i0] = 1.0 - f
    m[np.arange(n), i0 + 1] = f
    return m


def apply_alignment(alignment: Alignment, disparities: torch.Tensor, views: tuple[View, ...]) -> torch.Tensor:
    """Alignment.apply on [V, h, w] (no NaN): aligned inverse distance along the rays, float32."""
    n_views, h, w = disparities.shape
    device = disparities.device
    rows = torch.from_numpy(_interp_matrix(h, alignment.scale.shape[1])).to(device)
    cols = torch.from_numpy(_interp_matrix(w, alignment.scale.shape[2])).to(device)

    def upsample(grids: np.ndarray) -> torch.Tensor:
        return rows @ torch.from_numpy(grids).to(device) @ cols.T

    centre = torch.from_numpy(alignment.centre).to(device)[:, None, None]
    normaliser = torch.from_numpy(alignment.normaliser).to(device)[:, None, None]
    d = (disparities.to(F64) - centre) / normaliser
    if alignment.kind == "metric-distance":
        return (upsample(alignment.scale) * d).to(torch.float32)
    cos = view_cosines(views, device).to(F64)
    return (cos * (upsample(alignment.scale) * d + upsample(alignment.shift))).to(torch.float32)
