"""Sub-pixel disparity at the input's full resolution: one cost fit along the rows (the epipolar lines).

Given a smooth disparity field ``d`` of the left eye (the block matcher's, edge-aware smoothed
and brought to full size: within a pixel or so of the truth), the right eye is warped by the
field itself and by one pixel either way, and the windowed sum of squared differences with
the left eye is taken at the three offsets::

    C(k)(p) = mean over the window w(p) of sum_c (L(q) - R(q - d(q) - k))^2,   k = -1, 0, 1

A parabola through C(-1), C(0), C(1) puts each pixel's correction at its minimum. Every pixel
of the window is warped by its own disparity, so slanted surfaces (the floor, walls seen at a
glance) are compared where they really are. Both eyes are 3x3 median filtered (fireflies,
sensor speckle) and blurred a little first: band-limited images interpolate (bicubic) without
the pull toward whole pixels that costs sampled at whole-pixel disparities have, which is
what biases distances at a few pixels of disparity.

One pass, from a smooth field: the corrections of neighbouring windows are almost the same
samples, so repeating the pass from its own (noisy) output lets pixel-to-pixel noise grow
instead of shrinking; the caller smooths the result edge-aware instead.

The parabola also tells how well the window pins the disparity down: with ``C0`` the cost at
the minimum (twice the image noise, per channel) and ``K = C(-1) - 2 C(0) + C(1)`` its
curvature, the standard deviation of the correction is about ``sqrt(2 C0 / (channels * n * K))``
pixels for ``n`` independent samples in the window (`sigma`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLUR_SIGMA = 0.8
# Pixels of a window that carry independent noise, per window pixel: the blur and the
# median correlate neighbours (measured on Cycles renders: about one in four).
INDEPENDENT_SHARE = 0.25


@dataclass(frozen=True)
class CostFit:
    """The refined disparity (float32 [H, W], pixels) and the standard deviation of each
    pixel's correction (`sigma`, pixels; inf where the cost has no curvature)."""

    disparity: np.ndarray
    sigma: np.ndarray


def prepare_eye(image: np.ndarray) -> np.ndarray:
    """float32 [H, W, C] of an eye in 0..1: 3x3 median, then a light blur."""
    import cv2

    image = np.ascontiguousarray(image, np.float32)
    filtered = cv2.medianBlur(image, 3) if image.ndim == 2 or image.shape[2] in (1, 3, 4) else image
    blurred = cv2.GaussianBlur(filtered, (0, 0), BLUR_SIGMA)
    return blurred if blurred.ndim == 3 else blurred[..., None]


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    return cv2.boxFilter(image, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def cost_fit(left: np.ndarray, right: np.ndarray, disparity: np.ndarray, *, wrap: bool, radius: int = 8) -> CostFit:
    """One sub-pixel pass around `disparity` (pixels, col_left - col_right, [H, W]) of the left eye.

    `left`, `right`: eyes as `prepare_eye` gives them, the disparity's size; `wrap`: columns
    are periodic (equirect eyes), else the warp clamps at the borders; `radius`: the window's
    half side. The correction is at most one pixel either way.
    """
    import cv2

    disparity = np.asarray(disparity, np.float32)
    height, width = disparity.shape
    if left.shape[:2] != (height, width) or right.shape[:2] != (height, width):
        raise ValueError(f"eyes {left.shape[:2]} and {right.shape[:2]} must have the disparity's size {disparity.shape}")
    pad = int(np.ceil(np.abs(disparity).max(initial=0.0))) + 4
    padded = np.pad(right, ((0, 0), (pad, pad), (0, 0)), mode="wrap" if wrap else "edge")
    columns = np.ascontiguousarray(np.arange(width, dtype=np.float32)[None, :] + np.float32(pad) - disparity)
    rows = np.ascontiguousarray(np.broadcast_to(np.arange(height, dtype=np.float32)[:, None], (height, width)))
    channels = left.shape[2]
    costs = []
    for offset in (-1, 0, 1):
        map_x = columns - np.float32(offset) if offset else columns
        warped = cv2.remap(padded, map_x, rows, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        difference = cv2.subtract(left if channels > 1 else left[..., 0], warped)
        squared = cv2.multiply(difference, difference)
        costs.append(_box(squared if channels == 1 else squared.sum(axis=2), radius))
    before, centre, after = costs
    curvature = cv2.subtract(cv2.add(before, after), 2 * centre)
    curved = curvature > 1e-12
    safe = np.where(curved, curvature, np.float32(1.0))
    correction = np.clip(cv2.divide(cv2.subtract(before, after), 2 * safe), -1.0, 1.0)
    samples = np.float32(INDEPENDENT_SHARE * (2 * radius + 1) ** 2 * channels)
    floor = np.maximum(2 * np.minimum(centre, np.minimum(before, after)), 0.0)
    sigma = cv2.sqrt(cv2.divide(floor, samples * safe))
    sigma[~curved] = np.inf
    correction[~curved] = 0.0
    refined = cv2.add(disparity, correction)
    return CostFit(refined.astype(np.float32), sigma)
