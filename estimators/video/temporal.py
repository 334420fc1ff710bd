"""Temporal stabilisation of per-frame depth: windowed scale/shift alignment, then a motion-aware filter.

Relative models give each frame's disparity up to its own scale and shift, so a video
flickers. `TemporalStabiliser` removes that in two steps, each depending only on a
fixed window of frames before the current one, so that any chunk of a shot, started
with enough context frames, gives the same numbers as a run over the whole shot:

1. **Alignment** (relative disparity only). Frame t's reference is built from frames
   t-K .. t (K = `reference_window`; fewer at the start of the shot): each is brought
   to a common affine normalisation, the per-pixel median over the window is taken
   (moving objects, present at a pixel in only a few frames of the window, drop out;
   static content stays), each frame is re-fitted to that median robustly and the
   median is taken again. The reference is then put in **shot units**: the affine map
   that sends its 2nd percentile to 1/far and its 98th to 1/near (the rule of
   calibration.py, applied once to the static scene instead of to every frame). Frame
   t is fitted to its reference by robust least squares (a scale and a shift; trimmed
   iteratively to the pixels that agree with the reference within 3 robust standard
   deviations, so moving objects and new content do not pull it). The result is
   inverse distance in metres under the near/far rule: distance = 1/disparity.
   Fitting uses an area-averaged grid of at most `fit_rows` rows; the scale and shift
   are applied at full resolution.
2. **Filter** (every kind; metric depth gets only this step). The output at a pixel is
   the weighted mean of the aligned disparity of frames t, t-1, ..., t-F
   (F = `filter_window`, weights `filter_decay`^k), using frame t-k only where the colour
   frame at that pixel did not change between t-k and t (max RGB difference below
   `colour_threshold`, the change mask grown by one pixel) and was valid. Moving
   objects are thus left as they are; static content is averaged.

**A moving camera** (`push(..., camera=CameraFrame)`, from the camera solve,
camera_motion; `motion` setting). The still-camera rule compares different points of
the scene once the camera moves, so:

1. *Structure fit*: a frame that sees enough of the solve's triangulated points
   (`structure_fit`: points seen with 5 degrees of parallax or more, on flat
   neighbourhoods, weighted by parallax, robust) is mapped onto their inverse distance:
   the solve's shot units, with no shift left.
2. *Reference*: the structure-fitted frames of the window (t - K .. t) are reprojected
   into frame t (reprojection.forward_warp: rotation exactly, translation through
   their own depth, the nearest surface kept), and their median is frame t's
   reference; frame t is fitted to it robustly over all its pixels (moving objects,
   disocclusions and newly seen areas are trimmed). A frame without structure falls
   back to the still rule, its window turned to its rotation (a panning tripod).
3. *Filter*: a past frame counts at a pixel where the pixel's 3D point lands on a valid
   pixel of it that agrees in inverse distance (`agreement`) and in colour; its surface
   there, carried into frame t, is averaged (reprojection.backward_sample).

A new chain of the solve (a cut) starts every window afresh; a featureless frame is
stabilised but never becomes a reference. Metric input gets only the filter, with the
solve's locations in metres (`metres_per_unit`, from its own depth at the points).

Context: frame t's output depends on frames t - (K + F) .. t only (`context_frames`),
given their camera frames (which the camera solve makes equal for any chunk).
A chunk starting at frame A is run from frame max(1, A - context_frames) and its
first context frames are not written; the whole-shot run uses the same rule, so
chunks 1-30 and 31-60 equal a run of 1-60 (up to the estimator's own float noise).
Frames must be pushed in increasing order; a jump (a resume that skips finished
frames) simply starts new windows, which is exact because the pipeline always pushes
the full context of every frame it writes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..postprocess.filters import pad_columns
from .reprojection import Pose, backward_sample, forward_warp, rotate_grid

KINDS = ("relative-disparity", "metric-distance")
LOW_PERCENTILE = 2.0
HIGH_PERCENTILE = 98.0
FLOOR = 0.002  # robust_affine_fit: the least standard deviation, as a fraction of the targets' range


@dataclass(frozen=True)
class StabiliserSettings:
    """Knobs of `TemporalStabiliser` (see the module docstring)."""

    reference_window: int = 8
    filter_window: int = 3
    filter_decay: float = 0.5
    colour_threshold: float = 0.04
    fit_rows: int = 48
    align: bool = True
    filter: bool = True
    motion: bool = True
    min_points: int = 30
    agreement: float = 0.03

    def __post_init__(self) -> None:
        if self.reference_window < 0 or self.filter_window < 0:
            raise ValueError("reference_window and filter_window must be >= 0")
        if not 0.0 < self.filter_decay <= 1.0:
            raise ValueError(f"filter_decay must be in (0, 1], got {self.filter_decay}")
        if self.fit_rows < 4:
            raise ValueError(f"fit_rows must be at least 4, got {self.fit_rows}")

    @property
    def context_frames(self) -> int:
        """Frames before a chunk's first frame needed to reproduce a whole-shot run."""
        return (self.reference_window if self.align else 0) + (self.filter_window if self.filter else 0)


@dataclass(frozen=True)
class StabilisedFrame:
    """One output: `disparity` float32 [H, W] (1/m, shot units for relative models), `valid`,
    and the `scale`/`shift` applied to the input (1, 0 for metric input). `reference`:
    what the alignment followed ("window": the still-camera window median, "structure":
    the camera solve's moved reference, "none"). `metres_per_unit`: for metric input
    with a camera solve, metres per unit of the solve's locations (else None)."""

    number: int
    disparity: np.ndarray
    valid: np.ndarray
    scale: float
    shift: float
    reference: str = "window"
    metres_per_unit: float | None = None


def robust_affine_fit(
    x: np.ndarray, y: np.ndarray, *, iterations: int = 8, cutoff: float = 3.0, weights: np.ndarray | None = None
) -> tuple[float, float, np.ndarray]:
    """(scale, shift, inliers) minimising sum w (scale x + shift - y)^2 over the agreeing samples.

    Iteratively trimmed least squares: after each fit, samples whose residual exceeds
    `cutoff` robust standard deviations (1.4826 x the median absolute residual, scaled
    by each sample's weight where given) are left out of the next fit. The standard
    deviation is taken as at least `FLOOR` of the targets' 2-98 percentile range: where
    most samples agree exactly (half a 360 frame of sky at one value) the median
    residual is zero and would leave nothing else in the fit. Deterministic.
    ValueError if fewer than 2 samples.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError("robust_affine_fit needs at least 2 samples")
    w = np.ones(x.size) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    spread = np.sqrt(w / np.mean(w))  # residuals in units of each sample's own noise
    inliers = np.ones(x.size, bool)
    scale, shift = 1.0, 0.0
    low, high = np.percentile(y, [LOW_PERCENTILE, HIGH_PERCENTILE])
    floor = cutoff * max(FLOOR * (high - low), 1e-6 * (np.percentile(np.abs(y), 98.0) + 1e-12))
    for _ in range(iterations):
        xs, ys, ws = x[inliers], y[inliers], w[inliers]
        total = ws.sum()  # weighted means as np.average takes them (same sums, bit for bit), less its overhead
        x_mean, y_mean = (xs * ws).sum() / total, (ys * ws).sum() / total
        variance = ((xs - x_mean) ** 2 * ws).sum() / total
        scale = float(((xs - x_mean) * (ys - y_mean) * ws).sum() / total / variance) if variance > 0 else 0.0
        shift = float(y_mean - scale * x_mean)
        residual = np.abs(scale * x + shift - y) * spread
        sigma = 1.4826 * np.median(residual[inliers])
        updated = residual <= max(cutoff * sigma, floor)
        if updated.sum() < max(2, x.size // 10) or np.array_equal(updated, inliers):
            break
        inliers = updated
    return scale, shift, inliers


def _percentile_map(values: np.ndarray, low_target: float, high_target: float) -> tuple[float, float]:
    """Affine (a, b) sending the 2nd/98th percentiles of `values` to the targets."""
    low, high = np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if not high > low:
        return 0.0, float((low_target + high_target) / 2)
    a = (high_target - low_target) / (high - low)
    return float(a), float(low_target - a * low)


def fit_grid(disparity: np.ndarray, valid: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-averaged float64 grid of at most `rows` rows, and where it is fully valid."""
    import cv2

    height, width = disparity.shape
    if height <= rows:
        return disparity.astype(np.float64), valid.copy()
    cols = max(1, round(width * rows / height))
    weight = valid.astype(np.float32)
    total = cv2.resize(np.where(valid, disparity, 0.0).astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
    coverage = cv2.resize(weight, (cols, rows), interpolation=cv2.INTER_AREA)
    grid_valid = coverage > 0.999
    return np.where(grid_valid, total / np.maximum(coverage, 1e-6), 0.0).astype(np.float64), grid_valid


def build_reference(
    grids: list[np.ndarray], valids: list[np.ndarray], near: float, far: float, *, rounds: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """The window's static reference in shot units (2nd percentile -> 1/far, 98th -> 1/near).

    Returns (reference grid, where defined); see the module docstring, step 1.
    """
    normalised = []
    for grid, valid in zip(grids, valids, strict=True):
        a, b = _percentile_map(grid[valid], 0.0, 1.0) if valid.any() else (0.0, 0.0)
        normalised.append(np.where(valid, a * grid + b, np.nan))
    stack = np.stack(normalised)
    for _ in range(rounds):
        median = _nanmedian(stack)
        defined = np.isfinite(median)
        for i, (grid, valid) in enumerate(zip(grids, valids, strict=True)):
            both = valid & defined
            if both.sum() >= 2:
                scale, shift, _ = robust_affine_fit(grid[both], median[both])
                stack[i] = np.where(valid, scale * grid + shift, np.nan)
    median = _nanmedian(stack)
    defined = np.isfinite(median)
    if not defined.any():
        return np.zeros_like(median), defined
    a, b = _percentile_map(median[defined], 1.0 / far, 1.0 / near)
    return np.where(defined, a * median + b, 0.0), defined


def _nanmedian(stack: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN (NaN where all are NaN); fast for the few frames of a window."""
    if stack.shape[0] == 1:
        return stack[0].copy()
    ordered = np.sort(stack, axis=0)  # NaN sort last
    count = np.sum(np.isfinite(stack), axis=0)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[None], axis=0)[0]
    high = np.take_along_axis(ordered, np.maximum(count // 2, 0)[None], axis=0)[0]
    return np.where(count > 0, 0.5 * (low + high), np.nan)


def sample_at(values: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of an equirect map [H, W] at continuous (x, y) [N, 2] (pixel centres at c + 0.5; x wraps)."""
    import cv2

    xy = np.asarray(xy, np.float32).reshape(1, -1, 2) - 0.5
    return cv2.remap(np.asarray(values, np.float32), xy[..., 0], xy[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_WRAP)[0]


def structure_fit(disparity: np.ndarray, valid: np.ndarray, camera, min_points: int,
                  min_reach_deg: float = 5.0, smooth: float = 0.05, *, sample=sample_at) -> tuple[float, float] | None:
    """(scale, shift) putting a frame's disparity onto the camera solve's points (inverse distance), or None.

    Only points the solve saw with `min_reach_deg` of parallax or more count (their
    depth is a few per cent good; with fewer degrees, those that passed the solve's
    parallax test lean toward too near), weighted by their parallax squared (the
    precision of triangulated inverse depth). Corners are mostly on depth edges, where
    the disparity at the point's pixel mixes two surfaces: after a first fit, only
    points whose 3 x 3 neighbourhood varies by less than `smooth` count. Robust
    (trimmed) least squares: moving objects and mismatches drop out. None with fewer
    than `min_points` agreeing points or a non-positive scale. `sample`: sample_at, or its
    device twin for maps on a torch device.
    """
    if camera is None or len(camera.points_inverse_distance) < min_points:
        return None
    reach = np.asarray(camera.points_weight)
    xy, target = camera.points_xy[reach >= min_reach_deg], camera.points_inverse_distance[reach >= min_reach_deg]
    offsets = np.array([(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], np.float64)
    around = np.stack([sample(disparity, xy + offset) for offset in offsets], 1)
    on = (sample(valid, xy) > 0.999) & np.isfinite(around).all(axis=1)
    weights = np.minimum(reach[reach >= min_reach_deg], 30.0) ** 2
    if on.sum() < min_points:
        return None
    scale, shift, inliers = robust_affine_fit(around[on, 4], target[on], weights=weights[on])
    if inliers.sum() < min_points or not scale > 0:
        return None
    aligned = scale * around + shift
    flat = on & (np.ptp(aligned, axis=1) <= smooth * np.abs(aligned[:, 4]))
    if flat.sum() >= min_points:
        scale, shift, inliers = robust_affine_fit(around[flat, 4], target[flat], weights=weights[flat])
        if inliers.sum() < min_points or not scale > 0:
            return None
    return scale, shift


def metres_per_unit(disparity: np.ndarray, valid: np.ndarray, camera, min_points: int, *,
                    sample=sample_at) -> float | None:
    """Metres per unit of the camera solve, from metric inverse distance (1/m) at the solve's points."""
    if camera is None or len(camera.points_inverse_distance) < min_points:
        return None
    metric = sample(disparity, camera.points_xy)
    on = (sample(valid, camera.points_xy) > 0.999) & (metric > 0)
    if on.sum() < min_points:
        return None
    return float(np.median(camera.points_inverse_distance[on] / metric[on]))


class TemporalStabiliser:
    """Push frames in order, get each one stabilised (see the module docstring)."""

    def __init__(self, kind: str, near: float, far: float, settings: StabiliserSettings | None = None,
                 *, wrap: bool = True):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not 0.0 < near < far:
            raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
        self.kind = kind
        self.near = float(near)
        self.far = float(far)
        self.settings = settings or StabiliserSettings()
        self.wrap = wrap
        self._chain: int | None = None
        self._metres: float | None = None
        self._last: int | None = None
        self._grids: OrderedDict[int, tuple] = OrderedDict()
        self._structure: OrderedDict[int, tuple] = OrderedDict()
        self._history: OrderedDict[int, tuple] = OrderedDict()

    @property
    def align(self) -> bool:
        return self.settings.align and self.kind == "relative-disparity"

    def _forget_before(self, store: OrderedDict, first: int) -> None:
        for number in [n for n in store if n < first]:
            del store[number]

    def _restart(self, chain: int) -> None:
        """A new pose chain (a cut): nothing before it is a reference for what follows."""
        self._chain = chain
        self._metres = None
        self._grids.clear()
        self._structure.clear()
        self._history.clear()

    def push(self, number: int, disparity: np.ndarray, valid: np.ndarray, colour: np.ndarray,
             camera=None) -> StabilisedFrame:
        """Stabilise frame `number`: `disparity` [H, W] (relative, or 1/m for metric), `valid`, RGB `colour`.

        `camera`: the frame's CameraFrame from the camera solve (camera_motion), or None
        for the still-camera stabiliser; see the module docstring.
        """
        disparity, valid = self._inputs(disparity, valid)
        if self._last is not None and number <= self._last:
            raise ValueError(f"frames must be pushed in increasing order; got {number} after {self._last}")
        self._last = number
        if not self.settings.motion:
            camera = None
        if camera is not None and camera.chain != self._chain:
            self._restart(camera.chain)
        pose, keep = None, True
        if camera is not None:
            pose, keep = Pose(np.asarray(camera.rotation, float), np.asarray(camera.location, float)), \
                camera.status != "featureless"
            if self.kind == "metric-distance":
                self._metres = metres_per_unit(disparity, valid, camera, self.settings.min_points,
                                              sample=self._sample) or self._metres
        scale, shift, reference = 1.0, 0.0, "none"
        if self.align:
            scale, shift, reference = self._alignment(number, disparity, valid, camera, pose, keep)
        aligned = self._aligned(disparity, valid, scale, shift)
        if not self.settings.filter:
            out = aligned
        elif pose is None:
            out = self._filter(number, aligned, valid, colour)
        else:
            out = self._motion_filter(number, aligned, valid, colour, pose, keep)
        metres = self._metres if self.kind == "metric-distance" and camera is not None else None
        return StabilisedFrame(number, out, valid, scale, shift, reference, metres)

    # The full-size primitives: on the host here, on a torch device in device.temporal.DeviceStabiliser.
    def _inputs(self, disparity, valid):
        disparity = np.asarray(disparity, dtype=np.float32)
        return disparity, np.asarray(valid, dtype=bool) & np.isfinite(disparity)

    def _grid(self, disparity, valid, rows: int) -> tuple[np.ndarray, np.ndarray]:
        return fit_grid(disparity, valid, rows)

    def _sample(self, values, xy: np.ndarray) -> np.ndarray:
        return sample_at(values, xy)

    def _aligned(self, disparity, valid, scale: float, shift: float):
        return np.where(valid, scale * disparity + shift, 0.0).astype(np.float32)

    def _units(self, pose: Pose) -> Pose:
        """A pose with its location in the depth's units (metres for metric input)."""
        if self.kind != "metric-distance":
            return pose
        return Pose(pose.rotation, pose.location * (self._metres or 1.0))

    def _alignment(self, number: int, disparity: np.ndarray, valid: np.ndarray, camera, pose: Pose | None,
                   keep: bool) -> tuple[float, float, str]:
        first = number - self.settings.reference_window
        self._forget_before(self._grids, first)
        self._forget_before(self._structure, first)
        if camera is not None:
            fitted = self._structure_alignment(number, disparity, valid, camera, pose, keep)
            if fitted is not None:
                return (*fitted, "structure")
        return (*self._window_alignment(number, disparity, valid, pose, keep), "window")

    def _window_alignment(self, number: int, disparity: np.ndarray, valid: np.ndarray, pose: Pose | None,
                          keep: bool) -> tuple[float, float]:
        """Today's still-camera rule: the median of the window's frames (turned to this frame's rotation)."""
        settings = self.settings
        grid, grid_valid = self._grid(disparity, valid, settings.fit_rows)
        entries = [*self._grids.values(), (grid, grid_valid, pose)]
        if keep:
            self._grids[number] = (grid, grid_valid, pose)
        grids, valids = [], []
        cell = np.pi / grid.shape[0]
        for past_grid, past_valid, past_pose in entries:
            if pose is not None and past_pose is not None and not past_pose.same_as(pose, cell / 4, np.inf):
                past_grid, past_valid = rotate_grid(past_grid, past_valid, past_pose.rotation, pose.rotation)
            grids.append(past_grid)
            valids.append(past_valid)
        reference, defined = build_reference(grids, valids, self.near, self.far)
        both = grid_valid & defined
        if both.sum() < 2:
            return 1.0, 0.0
        scale, shift, _ = robust_affine_fit(grid[both], reference[both])
        return scale, shift

    def _structure_alignment(self, number: int, disparity: np.ndarray, valid: np.ndarray, camera, pose: Pose,
                             keep: bool) -> tuple[float, float] | None:
        """Fit to the window's structure-aligned frames moved into this frame; None without structure.

        Each frame with enough of the camera solve's points is first put onto them
        (structure_fit: shot units, no shift left); the reference of frame t is the
        median of those frames of the window (t included) reprojected into frame t,
        and frame t is fitted to it robustly over all its pixels.
        """
        settings = self.settings
        sparse = structure_fit(disparity, valid, camera, settings.min_points, sample=self._sample)
        if sparse is not None and keep:
            fine, fine_valid = self._grid(disparity, valid, 2 * settings.fit_rows)
            self._structure[number] = (sparse[0] * fine + sparse[1], fine_valid, pose)
        if not self._structure:
            return sparse
        grid, grid_valid = self._grid(disparity, valid, settings.fit_rows)
        target = self._units(pose)
        warped = [forward_warp(values, ok, self._units(past_pose), target, grid.shape)
                  for values, ok, past_pose in self._structure.values()]
        reference = _nanmedian(np.stack(warped))
        both = grid_valid & np.isfinite(reference)
        if both.sum() < settings.min_points:
            return sparse
        scale, shift, inliers = robust_affine_fit(grid[both], reference[both])
        if inliers.sum() < settings.min_points or not scale > 0:
            return sparse
        return scale, shift

    def _filter(self, number: int, aligned: np.ndarray, valid: np.ndarray, colour: np.ndarray) -> np.ndarray:
        import cv2

        settings = self.settings
        # 8-bit colour is ample to tell "unchanged" from "changed" and makes the comparisons cheap.
        colour8 = cv2.convertScaleAbs(np.asarray(colour, dtype=np.float32), alpha=255.0)
        self._forget_before(self._history, number - settings.filter_window)
        valid_f = valid.astype(np.float32)
        total = aligned * valid_f
        weight = valid_f.copy()
        for past_number, (past_aligned, past_valid, past_colour8, _) in self._history.items():
            use = self._unchanged(colour8, past_colour8, past_valid) * np.float32(
                settings.filter_decay ** (number - past_number))
            use *= valid_f
            total += use * past_aligned
            weight += use
        self._history[number] = (aligned, valid, colour8, None)
        return np.where(weight > 0, total / np.maximum(weight, np.float32(1e-30)), np.float32(0.0)).astype(np.float32)

    def _unchanged(self, colour8: np.ndarray, past_colour8: np.ndarray, past_valid: np.ndarray) -> np.ndarray:
        """Float mask of pixels whose colour did not change (the change grown by one pixel) and were valid."""
        import cv2

        threshold = self.settings.colour_threshold * 255.0
        difference = cv2.absdiff(colour8, past_colour8)
        largest = np.maximum(np.maximum(difference[..., 0], difference[..., 1]), difference[..., 2])
        changed = (largest >= threshold).astype(np.uint8)
        kernel = np.ones((3, 3), np.uint8)
        changed = cv2.dilate(np.ascontiguousarray(pad_columns(changed, 1, self.wrap)), kernel)[:, 1:-1]
        return (past_valid & (changed == 0)).astype(np.float32)

    def _motion_filter(self, number: int, aligned: np.ndarray, valid: np.ndarray, colour: np.ndarray, pose: Pose,
                       keep: bool) -> np.ndarray:
        """The filter with the camera moving: past frames are reprojected, and used where they agree.

        A past frame counts at a pixel where the pixel's 3D point lands on a valid pixel
        of it whose inverse distance agrees with the point's (within `agreement`) and
        whose colour agrees (as the still filter); its surface there is carried into
        this frame. A past frame at the same pose uses the still filter's rule.
        """
        import cv2

        settings = self.settings
        colour8 = cv2.convertScaleAbs(np.asarray(colour, dtype=np.float32), alpha=255.0)
        self._forget_before(self._history, number - settings.filter_window)
        valid_f = valid.astype(np.float32)
        total, weight = aligned * valid_f, valid_f.copy()
        here = self._units(pose)
        for past_number, (past_aligned, past_valid, past_colour8, past_pose) in self._history.items():
            decay = np.float32(settings.filter_decay ** (number - past_number))
            if past_pose is None or past_pose.same_as(pose, np.pi / aligned.shape[0] / 4, 1e-9):
                use, carried = self._unchanged(colour8, past_colour8, past_valid), past_aligned
            else:
                sampled = backward_sample(aligned, here, past_aligned, past_valid, self._units(past_pose),
                                          past_colour8)
                agree = sampled.valid & (np.abs(sampled.inverse - sampled.expected)
                                         <= settings.agreement * np.maximum(sampled.expected, 1e-12))
                difference = cv2.absdiff(colour8, sampled.colour).max(axis=2)
                use = (agree & (difference < settings.colour_threshold * 255.0)).astype(np.float32)
                carried = sampled.carried
            use *= valid_f * decay
            total += use * carried
            weight += use
        if keep:
            self._history[number] = (aligned, valid, colour8, pose)
        return np.where(weight > 0, total / np.maximum(weight, np.float32(1e-30)), np.float32(0.0)).astype(np.float32)
