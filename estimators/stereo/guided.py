"""Stereo-guided network depth: a relative network's dense, sharp disparity in the stereo's metres.

Stereo gives metric inverse distance where it is confident (textured, near enough, not at
the poles of ODS); a relative network gives disparity everywhere, with sharp edges, up to
a scale and shift that vary a little across the frame (a view's scale error, a ramp the
fusion's alignment could not see). The network's fused disparity ``D`` of the left eye is
mapped to metres by a smooth field::

    metric(p) = S(p) * D(p) / D0 + T(p)

where ``S`` and ``T`` are bilinear on a coarse control grid over the frame (columns
periodic for a 360 eye), ``D0`` the median of ``D`` (so the unknowns are of the order of
the scene's inverse distance). The fusion's deformable grid, in metric units: the
unknowns are fitted to the stereo's inverse distance by weighted least squares on
relative residuals ``(metric - stereo) / stereo``, weighted by the stereo's confidence and
by the precision its disparity allows (a far wall's 1-2 px count less than the floor's
5-10), with first-difference smoothness on both grids (strong on the shift, which a
relative network's ambiguity makes nearly constant) and a pull toward the frame's single
robust affine fit, where the stereo says nothing (poles, sky, textureless
walls). Residuals are re-weighted (Cauchy) a few times so that stereo blunders and the
network's own mistakes at object edges do not bend the field.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

# Control points of the field over a 360 eye (rows, columns): 18 degrees apart.
GRID_360 = (11, 20)
# Over a VR180 eye (180 x 180 degrees).
GRID_180 = (11, 11)
MAX_SAMPLES = 120_000
# Robust scale floor of the relative residuals (stereo noise is rarely below this).
SIGMA_FLOOR = 0.01
# Fewer confident stereo pixels than this give no scale (an all-sky or textureless frame).
MIN_SAMPLES = 64


class NoStereoScale(ValueError):
    """The stereo has too few confident pixels to give the network its metric scale."""


@dataclass(frozen=True)
class MetricField:
    """The fitted map from a relative disparity to metric inverse distance (module docstring).

    `scale`, `shift`: float64 [gr, gc] control values; `reference`: D0; `wrap`: columns
    periodic; `affine`: the single robust (scale, shift) fit the grids are pulled toward;
    `samples`: how many stereo pixels the fit used; `residual`: the robust RMS of their
    relative residuals after the fit.
    """

    scale: np.ndarray
    shift: np.ndarray
    reference: float
    wrap: bool
    affine: tuple[float, float]
    samples: int
    residual: float

    def mixed(self, other: MetricField, weight: float) -> MetricField:
        """The field (1 - weight) * self + weight * other (both map the same relative disparity; the
        mix's reference, sample count and residual are `other`'s)."""
        ratio = other.reference / self.reference
        scale = (1.0 - weight) * self.scale * ratio + weight * other.scale
        shift = (1.0 - weight) * self.shift + weight * other.shift
        affine = ((1.0 - weight) * self.affine[0] * ratio + weight * other.affine[0],
                  (1.0 - weight) * self.affine[1] + weight * other.affine[1])
        return replace(other, scale=scale, shift=shift, affine=affine)

    def apply(self, relative: np.ndarray) -> np.ndarray:
        """Metric inverse distance (1/m, float32 [H, W]) of a relative disparity map."""
        import cv2

        height, width = relative.shape
        rows = _interpolation(height, self.scale.shape[0], False).astype(np.float32)
        cols = _interpolation(width, self.scale.shape[1], self.wrap).astype(np.float32).T
        scale = rows @ (self.scale / self.reference).astype(np.float32) @ cols
        shift = rows @ self.shift.astype(np.float32) @ cols
        return cv2.add(cv2.multiply(scale, np.asarray(relative, np.float32)), shift)


def _positions(n: int, g: int, wrap: bool) -> np.ndarray:
    """Fractional control-grid coordinate of n pixel centres."""
    centres = (np.arange(n) + 0.5) / n
    return centres * g if wrap else centres * (g - 1)


def _taps(position: np.ndarray, g: int, wrap: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, upper weight) of bilinear interpolation on g control points."""
    if wrap:
        shifted = position - 0.5  # control j sits at the centre of its 1/g of the circle
        lower = np.floor(shifted).astype(np.int64)
        fraction = shifted - lower
        return np.mod(lower, g), np.mod(lower + 1, g), fraction
    lower = np.minimum(np.floor(position).astype(np.int64), g - 2)
    return lower, lower + 1, position - lower


def _interpolation(n: int, g: int, wrap: bool) -> np.ndarray:
    """Dense [n, g] bilinear weights of n pixel centres on g control points."""
    lower, upper, fraction = _taps(_positions(n, g, wrap), g, wrap)
    matrix = np.zeros((n, g))
    np.add.at(matrix, (np.arange(n), lower), 1.0 - fraction)
    np.add.at(matrix, (np.arange(n), upper), fraction)
    return matrix


def _difference_operator(rows: int, cols: int, wrap: bool) -> sp.csr_matrix:
    """First differences between neighbouring control points (columns periodic with `wrap`)."""
    index = np.arange(rows * cols).reshape(rows, cols)
    pairs = [(index[:-1].ravel(), index[1:].ravel())]
    pairs.append((index.ravel(), np.roll(index, -1, axis=1).ravel()) if wrap and cols > 2
                 else (index[:, :-1].ravel(), index[:, 1:].ravel()))
    first = np.concatenate([a for a, _ in pairs])
    second = np.concatenate([b for _, b in pairs])
    count = first.size
    data = np.r_[np.ones(count), -np.ones(count)]
    return sp.csr_matrix((data, (np.r_[np.arange(count), np.arange(count)], np.r_[first, second])),
                         shape=(count, rows * cols))


def _samples(relative, metric, weight, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the stereo pixels the fit uses: a regular subset of the usable ones."""
    usable = (weight > 0) & np.isfinite(relative) & np.isfinite(metric) & (metric > 0)
    count = int(usable.sum())
    if count == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    stride = max(1, int(np.ceil(np.sqrt(count / limit))))
    rows, cols = np.nonzero(usable[::stride, ::stride])
    return rows * stride, cols * stride


def _robust_affine(x: np.ndarray, target: np.ndarray, weight: np.ndarray, iterations: int = 6) -> tuple[float, float]:
    """(a, b) minimising the robust weighted relative error of a x + b against target."""
    design = np.stack([x, np.ones_like(x)], axis=1) / target[:, None]
    w = weight.copy()
    a, b = 1.0, 0.0
    for _ in range(iterations):
        root = np.sqrt(w)
        a, b = np.linalg.lstsq(design * root[:, None], root, rcond=None)[0]
        residual = design @ np.array([a, b]) - 1.0
        sigma = max(1.4826 * float(np.median(np.abs(residual))), SIGMA_FLOOR)
        w = weight / (1.0 + (residual / (3.0 * sigma)) ** 2)
    return float(a), float(b)


def fit_metric_field(relative: np.ndarray, metric: np.ndarray, weight: np.ndarray, *, wrap: bool,
                     grid: tuple[int, int] = GRID_360, smoothness: float = 0.3, shift_smoothness: float = 3.0,
                     prior: float = 0.02, iterations: int = 5) -> MetricField:
    """Fit the field that maps `relative` (float [H, W], larger is nearer) onto `metric` (1/m)
    where `weight` (float [H, W], 0 = no stereo) is positive; see the module docstring.

    `smoothness`, `shift_smoothness`: first-difference weights of the scale and shift grids,
    relative to the data (per control point); `prior`: pull of both grids toward the single
    robust affine fit. ValueError when no pixel is usable.
    """
    relative = np.asarray(relative, np.float64)
    rows, cols = _samples(relative, metric, weight, MAX_SAMPLES)
    if rows.size < MIN_SAMPLES:
        raise NoStereoScale(f"the stereo is confident on {rows.size} pixels, too few to give the network its "
                            "metric scale")
    height, width = relative.shape
    reference = float(np.median(relative[rows, cols]))
    reference = reference if reference > 0 else float(np.abs(relative[rows, cols]).max() or 1.0)
    x = relative[rows, cols] / reference
    target = np.asarray(metric, np.float64)[rows, cols]
    confidence = np.asarray(weight, np.float64)[rows, cols]
    a, b = _robust_affine(x, target, confidence)
    g_rows, g_cols = grid
    r0, r1, fr = _taps(_positions(height, g_rows, False)[rows], g_rows, False)
    c0, c1, fc = _taps(_positions(width, g_cols, wrap)[cols], g_cols, wrap)
    index = np.stack([r0 * g_cols + c0, r0 * g_cols + c1, r1 * g_cols + c0, r1 * g_cols + c1], axis=1)
    taps = np.stack([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc], axis=1)
    n_grid = g_rows * g_cols
    values = np.concatenate([taps * (x / target)[:, None], taps / target[:, None]], axis=1)
    columns = np.concatenate([index, index + n_grid], axis=1)
    design = sp.csr_matrix((values.ravel(), (np.repeat(np.arange(x.size), 8), columns.ravel())),
                           shape=(x.size, 2 * n_grid))
    per_point = x.size / n_grid
    difference = _difference_operator(g_rows, g_cols, wrap)
    regulariser = sp.block_diag([(smoothness**2 * per_point) * (difference.T @ difference),
                                 (shift_smoothness**2 * per_point) * (difference.T @ difference)])
    regulariser = regulariser + sp.eye(2 * n_grid) * (prior**2 * per_point)
    start = np.r_[np.full(n_grid, a), np.full(n_grid, b)]
    anchor = (prior**2 * per_point) * start
    w = confidence.copy()
    solution = start
    for _ in range(iterations):
        normal = (design.T @ sp.diags(w) @ design + regulariser).tocsc()
        solution = spla.spsolve(normal, design.T @ w + anchor)
        residual = design @ solution - 1.0
        sigma = max(1.4826 * float(np.median(np.abs(residual))), SIGMA_FLOOR)
        w = confidence / (1.0 + (residual / (3.0 * sigma)) ** 2)
    residual = design @ solution - 1.0
    kept = np.abs(residual) <= np.percentile(np.abs(residual), 95)
    return MetricField(solution[:n_grid].reshape(grid), solution[n_grid:].reshape(grid), reference, wrap,
                       (a, b), int(x.size), float(np.sqrt(np.mean(residual[kept] ** 2))))


# --- the whole path: stereo, the network fused on the left eye, the field ---------------------------------

# The stereo of the guided path matches at most this wide (a 360 eye; a VR180 eye: half its angle).
STEREO_WIDTH = 1024
# Where the field meets infinity rests on the far stereo's pixel or two of disparity. Matched 1024
# wide, a 360 eye's stereo reaches about 10 m (1 px) and the far ground of seven of twelve outdoor
# renders came out 10-30% too near at 50-150 m. When more than FAR_SHARES[0] of what the network sees is
# beyond the stereo's reach by the first fit, a 360 pair is matched again on eyes at most
# FAR_STEREO_WIDTH wide, block-matched FAR_MATCH_WIDTH wide and refined at that width (reaching
# about 20 m, twice as precisely), and the field fitted again: within 6% at 50-150 m. Rooms (at most
# 3% beyond 10 m on the project's renders) keep the first fit; open scenes (8-9%) get the second.
# Between the two shares of FAR_SHARES the fields are mixed in proportion, so that a clip whose share
# drifts across them (a walk from a doorway into a street) changes its far field gradually instead of
# jumping between two fits from one frame to the next.
FAR_STEREO_WIDTH = 2048
FAR_MATCH_WIDTH = 1536
FAR_SHARES = (0.035, 0.075)
# Stereo pixels within this many pixels of a depth edge (of the network or the stereo) are left
# out of the fit: both put edges a pixel or two apart.
EDGE_MARGIN_PX = 3
EDGE_LOG_STEP = 0.05
# A stereo pixel's relative error is about sqrt(SIGMA_FLOOR^2 + (0.08 px / d)^2) for a disparity of
# d pixels of the stereo's own eye (0.08 px: the sub-pixel fit's precision); its weight in the fit
# is the inverse of that variance relative to a near pixel's, d^2 / (d^2 + PRECISION_PX^2). A far
# wall's disparity of 1 to 2 px otherwise counted as much as the floor's 5 to 10 px, and its
# blotches (+-5% on weak texture) bent the field.
PRECISION_PX = 0.08 / SIGMA_FLOOR


@dataclass(frozen=True)
class GuidedDepth:
    """Stereo-guided depth of the left eye.

    `disparity`: float32 [H, W] metric inverse distance (1/m), 0 off the mask; `distance`:
    metres, `max_distance` off the mask; `mask`: every pixel the network saw that is not sky
    (nor beyond `max_distance`); `sky`: the pixels at infinity; `stereo`: the stereo alone;
    `relative`: the network's fused disparity; `field`: the fit (None when the stereo had too few
    confident pixels: then nothing is on the mask); `timings`: seconds per stage; `far_weight`: how much
    the far field's second fit counted (far_weight(), 0 without it).
    """

    disparity: np.ndarray
    distance: np.ndarray
    mask: np.ndarray
    sky: np.ndarray
    stereo: object
    relative: np.ndarray
    field: MetricField | None
    timings: dict
    far_weight: float = 0.0


def _depth_edges(inverse: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Bool: pixels within EDGE_MARGIN_PX of a step of more than EDGE_LOG_STEP in log inverse depth."""
    import cv2

    log = np.log(np.where(valid & (inverse > 0), inverse, 1e-6).astype(np.float32))
    step = np.zeros(log.shape, np.float32)
    step[:, 1:] = np.abs(np.diff(log, axis=1))
    step[1:] = np.maximum(step[1:], np.abs(np.diff(log, axis=0)))
    kernel = np.ones((2 * EDGE_MARGIN_PX + 1, 2 * EDGE_MARGIN_PX + 1), np.uint8)
    return cv2.dilate((step > EDGE_LOG_STEP).astype(np.uint8), kernel).astype(bool)


def stereo_weight(stereo, relative: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Float32 [H, W]: how much each stereo pixel counts in the fit (its confidence times the
    precision its disparity allows, PRECISION_PX; 0 off its mask, on the network's sky or unseen
    pixels, and next to depth edges of either)."""
    inverse = np.where(stereo.mask, 1.0 / stereo.distance, 0.0).astype(np.float32)
    usable = stereo.mask & seen & np.isfinite(relative)
    usable &= ~_depth_edges(inverse, stereo.mask) & ~_depth_edges(np.maximum(relative, 1e-6), seen)
    pixels = np.abs(np.asarray(stereo.disparity, np.float32))
    precision = pixels ** 2 / (pixels ** 2 + np.float32(PRECISION_PX) ** 2)
    return np.where(usable, np.maximum(stereo.confidence, 0.05) * precision, 0.0).astype(np.float32)


def _resized(image: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    import cv2

    if image.shape[:2] == shape:
        return image
    if nearest:
        return cv2.resize(image.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    return cv2.resize(image.astype(np.float32), shape[::-1], interpolation=cv2.INTER_AREA)


def guide(relative: np.ndarray, seen: np.ndarray, sky: np.ndarray, stereo, *, wrap: bool,
          max_distance: float, grid: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, MetricField]:
    """(metric inverse distance, mask, field) of a fused relative disparity given the stereo (which
    may be smaller: the field is fitted at the stereo's size and applied at the network's).

    The mask is every seen pixel that is not sky and maps to a distance under `max_distance`."""
    try:
        field = _fitted(relative, seen, sky, stereo, wrap=wrap, grid=grid)
    except NoStereoScale as error:
        warnings.warn(f"{error}: nothing has a metric distance, written at the far distance with mask 0",
                      stacklevel=2)
        return np.zeros(relative.shape, np.float32), np.zeros(relative.shape, bool), None
    return (*_applied(field, relative, seen, sky, max_distance), field)


def _fitted(relative: np.ndarray, seen: np.ndarray, sky: np.ndarray, stereo, *, wrap: bool,
            grid: tuple[int, int] | None) -> MetricField:
    """The field of `relative` fitted to the stereo at the stereo's size (guide); NoStereoScale when the
    stereo is confident on too few pixels."""
    shape = stereo.distance.shape
    small_seen = _resized(seen & ~sky, shape, nearest=True)
    small = np.where(small_seen, _resized(np.nan_to_num(relative), shape), 0.0)
    weight = stereo_weight(stereo, small, small_seen)
    return fit_metric_field(small, np.where(stereo.mask, 1.0 / stereo.distance, np.nan), weight, wrap=wrap,
                            grid=grid or (GRID_360 if wrap else GRID_180))


def _applied(field: MetricField, relative: np.ndarray, seen: np.ndarray, sky: np.ndarray,
             max_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """(metric inverse distance, mask) of `relative` through `field` (guide's mask)."""
    metric = field.apply(relative)
    mask = seen & ~sky & (metric > np.float32(1.0 / max_distance))  # NaN compares False
    metric[~mask] = 0.0
    return metric, mask


def _shrunk(image: np.ndarray, width: int | None) -> np.ndarray:
    import cv2

    if not width or image.shape[1] <= width:
        return image
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (int(width), height), interpolation=cv2.INTER_AREA)


def _embed_half(eye: np.ndarray) -> np.ndarray:
    """A VR180 eye [W, W, 3] as the front half of a full equirect [W, 2W, 3]; the back half mirrors
    the front about the +-Y meridians, so every view the network gets sees a continuous picture."""
    half = eye.shape[1] // 2
    return np.concatenate([eye[:, half - 1::-1], eye, eye[:, :half - 1:-1]], axis=1)


def fuse_left_eye(left: np.ndarray, estimator, *, vr180: bool, views="cube",
                  **fusion_options) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """The network's fused disparity of the left eye (panorama.fusion, uncalibrated):
    (disparity, seen and not sky, sky, timings), each [H, W] of the eye."""
    from ..panorama.fusion import estimate_equirect

    frame = _embed_half(left) if vr180 else left
    fused = estimate_equirect(frame, estimator, views, calibrate=False, **fusion_options)
    disparity, seen, sky = fused.disparity, fused.mask, fused.sky
    if vr180:
        quarter = left.shape[1] // 2
        crop = slice(quarter, quarter + left.shape[1])
        disparity, seen, sky = disparity[:, crop], seen[:, crop], sky[:, crop]
    return disparity, seen, sky, dict(fused.timings)


def _wider(eye: np.ndarray, matched_width: int) -> bool:
    """Whether the far field's match would see more of the eye than the first match did."""
    return min(eye.shape[1], FAR_STEREO_WIDTH) > matched_width


def _far(metric: np.ndarray, mask: np.ndarray, stereo, ipd: float) -> float:
    """The share of `mask` (the network's pixels) that the fitted `metric` inverse distance puts beyond
    the reach of `stereo` (MIN_MEASURABLE_DISPARITY_PX of its ODS eye, at the horizon)."""
    from .matching import MIN_MEASURABLE_DISPARITY_PX
    from .ods_geometry import ods_distance_from_disparity

    radians = np.array(2.0 * np.pi * MIN_MEASURABLE_DISPARITY_PX / stereo.distance.shape[1])
    reach = float(ods_distance_from_disparity(radians, np.pi / 2, ipd=ipd, max_distance=np.inf))
    return float(np.count_nonzero(mask & (metric < np.float32(1.0 / reach)))) / max(1, int(np.count_nonzero(mask)))


def far_weight(share: float, shares: tuple[float, float]) -> float:
    """How much the far field's second fit counts (0..1) when the first puts `share` of the frame beyond
    the first stereo's reach: 0 up to shares[0], 1 from shares[1], linear between."""
    low, high = shares
    if share <= low:
        return 0.0
    return 1.0 if share >= high else (share - low) / (high - low)


def _refitted(first: MetricField, first_stereo, far_stereo, weight: float, relative: np.ndarray, seen: np.ndarray,
              sky: np.ndarray, *, grid: tuple[int, int] | None) -> tuple[MetricField, object, float]:
    """(field, stereo, weight): the field fitted again on the far field's 360 stereo, mixed with the
    `first` by `weight` (far_weight); the first stands where the wider match is confident on too few
    pixels to fit."""
    try:
        second = _fitted(relative, seen, sky, far_stereo, wrap=True, grid=grid)
    except NoStereoScale:
        return first, first_stereo, 0.0
    return (second if weight >= 1.0 else first.mixed(second, weight)), far_stereo, weight


def estimate_guided(left: np.ndarray, right: np.ndarray, estimator, *, vr180: bool = False, views="cube",
                    ipd: float = 0.064, pole_merge: tuple[float, float] | None = (60.0, 75.0),
                    min_distance: float = 0.5, max_distance: float = 100.0, check_eye_order: bool = True,
                    grid: tuple[int, int] | None = None, stereo=None, stereo_width: int | None = STEREO_WIDTH,
                    far_shares: tuple[float, float] | None = FAR_SHARES, **fusion_options) -> GuidedDepth:
    """Stereo-guided depth of the left eye of a 360 ODS pair (each eye H x 2H) or, with `vr180`,
    of a VR180 pair (each eye W x W): the stereo (matching / vr180), the `estimator`'s fused
    disparity of the left eye (any estimator of DESIGN.md's protocol; `views` and
    `fusion_options` as panorama.fusion.estimate_equirect), and the field between them.
    `stereo`: the pair's StereoDepth when it is already known (it is not matched again);
    `stereo_width`: the stereo matches eyes area-downscaled to at most this width (the field is
    smooth: it needs the stereo's scale, not its detail), None for the eyes' own width;
    `far_shares`: a 360 pair whose first fit puts more than the first of these shares of the network's
    pixels beyond the stereo's reach is matched again for its far field (FAR_STEREO_WIDTH) and fitted
    again; the second field counts in full from the second share, in proportion between (far_weight;
    (0, 0): always the second, None: never). `timings["far_stereo"]`: that second match's seconds (0
    without it)."""
    import time

    from .matching import estimate_stereo_equirect, to_float_rgb
    from .vr180 import estimate_stereo_vr180

    # The field needs the stereo's scale, not its jumps: the sub-pixel pass may smooth across them
    # (kept, the matcher's noise on far ground would move the horizon's scale).
    common = dict(ipd=ipd, min_distance=min_distance, max_distance=max_distance, keep_px=0)

    # Converted (and checked) once: both matches and the network use them.
    left_rgb, right_rgb = to_float_rgb(left, "left eye"), to_float_rgb(right, "right eye")

    def match():
        started = time.perf_counter()
        small_left, small_right = _shrunk(left_rgb, stereo_width), _shrunk(right_rgb, stereo_width)
        if vr180:
            pair = estimate_stereo_vr180(small_left, small_right, check_eye_order=check_eye_order, **common)
        else:
            pair = estimate_stereo_equirect(small_left, small_right, pole_merge=pole_merge,
                                            check_eye_order=check_eye_order, **common)
        return pair, time.perf_counter() - started

    def match_far():
        """The 360 pair again for its far field: no edge step (the fit leaves the pixels next to jumps
        out) nor sky search (the network's sky is the sky)."""
        started = time.perf_counter()
        wide_left, wide_right = _shrunk(left_rgb, FAR_STEREO_WIDTH), _shrunk(right_rgb, FAR_STEREO_WIDTH)
        pair = estimate_stereo_equirect(wide_left, wide_right, pole_merge=pole_merge, check_eye_order=False,
                                        max_match_width=FAR_MATCH_WIDTH, edges=False, find_sky=False, **common)
        return pair, time.perf_counter() - started

    # The stereo matches while the network runs: its threads fill the cores the network's
    # serial parts (projection, merging, sky) leave idle.
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as pool:
        matching = pool.submit(match) if stereo is None else None
        relative, seen, sky, timings = fuse_left_eye(np.clip(left_rgb, 0.0, 1.0), estimator, vr180=vr180,
                                                      views=views, **fusion_options)
        network_seconds = time.perf_counter() - started
        stereo, stereo_seconds = matching.result() if matching is not None else (stereo, 0.0)
    fused = time.perf_counter()
    disparity, mask, field = guide(relative, seen, sky, stereo, wrap=not vr180, max_distance=max_distance, grid=grid)
    far_seconds, weight = 0.0, 0.0
    if (matching is not None and not vr180 and far_shares is not None and field is not None
            and _wider(left, stereo.distance.shape[1])):
        weight = far_weight(_far(disparity, mask, stereo, ipd), far_shares)
    if weight > 0.0:
        far_stereo, far_seconds = match_far()
        field, stereo, weight = _refitted(field, stereo, far_stereo, weight, relative, seen, sky, grid=grid)
        if weight > 0.0:
            disparity, mask = _applied(field, relative, seen, sky, max_distance)
    distance = np.full(disparity.shape, np.float32(max_distance))
    np.divide(np.float32(1.0), disparity, out=distance, where=mask)
    timings = {"stereo": stereo_seconds, "far_stereo": far_seconds, **{f"network_{k}": v for k, v in timings.items()},
               "network": network_seconds, "guide": time.perf_counter() - fused - far_seconds}
    return GuidedDepth(disparity, np.minimum(distance, np.float32(max_distance)), mask, sky, stereo, relative,
                       field, timings, weight)
