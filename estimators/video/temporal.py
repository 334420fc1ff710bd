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

Context: frame t's output depends on frames t - (K + F) .. t only (`context_frames`).
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

KINDS = ("relative-disparity", "metric-distance")
LOW_PERCENTILE = 2.0
HIGH_PERCENTILE = 98.0


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
    and the `scale`/`shift` applied to the input (1, 0 for metric input)."""

    number: int
    disparity: np.ndarray
    valid: np.ndarray
    scale: float
    shift: float


def robust_affine_fit(
    x: np.ndarray, y: np.ndarray, *, iterations: int = 8, cutoff: float = 3.0
) -> tuple[float, float, np.ndarray]:
    """(scale, shift, inliers) minimising sum (scale x + shift - y)^2 over the agreeing samples.

    Iteratively trimmed least squares: after each fit, samples whose residual exceeds
    `cutoff` robust standard deviations (1.4826 x the median absolute residual) are left
    out of the next fit. Deterministic. ValueError if fewer than 2 samples.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError("robust_affine_fit needs at least 2 samples")
    inliers = np.ones(x.size, bool)
    scale, shift = 1.0, 0.0
    floor = 1e-6 * (np.percentile(np.abs(y), 98.0) + 1e-12)
    for _ in range(iterations):
        xs, ys = x[inliers], y[inliers]
        x_mean, y_mean = xs.mean(), ys.mean()
        variance = np.mean((xs - x_mean) ** 2)
        scale = float(np.mean((xs - x_mean) * (ys - y_mean)) / variance) if variance > 0 else 0.0
        shift = float(y_mean - scale * x_mean)
        residual = np.abs(scale * x + shift - y)
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
        self._grids: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._history: OrderedDict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()

    @property
    def align(self) -> bool:
        return self.settings.align and self.kind == "relative-disparity"

    def _forget_before(self, store: OrderedDict, first: int) -> None:
        for number in [n for n in store if n < first]:
            del store[number]

    def push(self, number: int, disparity: np.ndarray, valid: np.ndarray, colour: np.ndarray) -> StabilisedFrame:
        """Stabilise frame `number`: `disparity` [H, W] (relative, or 1/m for metric), `valid`, RGB `colour`."""
        disparity = np.asarray(disparity, dtype=np.float32)
        valid = np.asarray(valid, dtype=bool) & np.isfinite(disparity)
        if self._history and number <= next(reversed(self._history)):
            raise ValueError(f"frames must be pushed in increasing order; got {number} after {next(reversed(self._history))}")
        scale, shift = 1.0, 0.0
        if self.align:
            scale, shift = self._alignment(number, disparity, valid)
        aligned = np.where(valid, scale * disparity + shift, 0.0).astype(np.float32)
        out = self._filter(number, aligned, valid, colour) if self.settings.filter else aligned
        return StabilisedFrame(number, out, valid, scale, shift)

    def _alignment(self, number: int, disparity: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
        settings = self.settings
        self._forget_before(self._grids, number - settings.reference_window)
        grid, grid_valid = fit_grid(disparity, valid, settings.fit_rows)
        self._grids[number] = (grid, grid_valid)
        grids = [g for g, _ in self._grids.values()]
        valids = [v for _, v in self._grids.values()]
        reference, defined = build_reference(grids, valids, self.near, self.far)
        both = grid_valid & defined
        if both.sum() < 2:
            return 1.0, 0.0
        scale, shift, _ = robust_affine_fit(grid[both], reference[both])
        return scale, shift

    def _filter(self, number: int, aligned: np.ndarray, valid: np.ndarray, colour: np.ndarray) -> np.ndarray:
        import cv2

        settings = self.settings
        # 8-bit colour is ample to tell "unchanged" from "changed" and makes the comparisons cheap.
        colour8 = cv2.convertScaleAbs(np.asarray(colour, dtype=np.float32), alpha=255.0)
        threshold = settings.colour_threshold * 255.0
        self._forget_before(self._history, number - settings.filter_window)
        valid_f = valid.astype(np.float32)
        total = aligned * valid_f
        weight = valid_f.copy()
        kernel = np.ones((3, 3), np.uint8)
        for past_number, (past_aligned, past_valid, past_colour8) in self._history.items():
            difference = cv2.absdiff(colour8, past_colour8)
            largest = np.maximum(np.maximum(difference[..., 0], difference[..., 1]), difference[..., 2])
            changed = (largest >= threshold).astype(np.uint8)
            changed = cv2.dilate(np.ascontiguousarray(pad_columns(changed, 1, self.wrap)), kernel)[:, 1:-1]
            use = (past_valid & (changed == 0)).astype(np.float32) * np.float32(settings.filter_decay ** (number - past_number))
            use *= valid_f
            total += use * past_aligned
            weight += use
        self._history[number] = (aligned, valid, colour8)
        return np.where(weight > 0, total / np.maximum(weight, np.float32(1e-30)), np.float32(0.0)).astype(np.float32)
