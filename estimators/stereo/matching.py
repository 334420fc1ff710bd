"""Metric depth from stereo: 360 omni-directional stereo (ODS) and rectified perspective pairs.

Matching is OpenCV's semi-global block matching along image rows (the epipolar lines of both
rectified pairs and ODS equirect eyes), run on both eyes for a left-right consistency check,
speckle-filtered, then made dense: rejected pixels take the background (smaller) disparity of
their row neighbours, and a weighted median guided by the image (its luminance) removes the
streaks that leaves while keeping depth edges on image edges. Equirect eyes are padded with
wrapped columns so that the 0/360 degree seam is matched like any other column.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Literal

import numpy as np

from .ods_geometry import ods_distance_from_disparity, ods_informative_rows

StereoLayout = Literal["top-bottom", "side-by-side", "vr180"]
STEREO_LAYOUTS = ("top-bottom", "side-by-side", "vr180")

# Two eyes are one picture when they agree within 8-bit quantisation (one level) on at
# least this share of pixels; anything else is answered (open landscapes differ very little).
SAME_PICTURE_SHARE = 0.999
# The smallest disparity stereo can measure, in pixels of the matched eye (the matching
# happens at most `max_match_width` wide): below it, a pixel is far field, off the mask.
MIN_MEASURABLE_DISPARITY_PX = 1.0
# Sky candidates of an ODS eye: disparities under this (pixels of the matched eye), about
# 10 m at 2048 wide; SGBM's smoothness carries the horizon's small disparities into the sky.
SKY_DISPARITY_PX = 2.0
# Warn when less of the frame than this has a measurable disparity.
LOW_COVERAGE_WARNING = 0.05
# A pixel is on the mask only when the sub-pixel pass pins its disparity down to this share of
# itself (one standard deviation, subpixel.cost_fit): too little texture for how far it is.
MAX_RELATIVE_SIGMA = 0.05

# Within `keep_px` (pixels of a 2048-wide match) of the match's jumps (a ratio over 1 + KEEP_JUMP within
# three columns or rows, disparities below KEEP_FLOOR_PX counted as that much) the sub-pixel pass keeps
# the match: its smoothing and its window would spread each jump into a ramp three or four times
# wider, which the edge step (snap_match_edges) no longer finds as a jump.
KEEP_JUMP, KEEP_FLOOR_PX = 0.2, 4.0
# Matching settings for ODS eyes: small disparities (a few pixels for a room) need sub-pixel
# accuracy, so match colour with large blocks and strong smoothness, then re-fit fractions.
ODS_MATCHING = dict(block_size=9, colour=True, denoise=True, smoothness=(16.0, 64.0), median_radius=6,
                    median_downscale=2, refine_radius=8, smooth_radius=4, keep_px=3)


@dataclasses.dataclass(frozen=True)
class DisparityMap:
    """Dense disparity in pixels (col_left - col_right) of the left eye, with its validity."""

    disparity: np.ndarray  # float32 [H, W]
    mask: np.ndarray  # bool [H, W]: matched and left-right consistent (not filled)
    confidence: np.ndarray  # float32 [H, W] in 0..1
    sigma: np.ndarray | None = None  # float32 [H, W]: the sub-pixel pass's standard deviation (pixels)
    # (left, right) float32 RGB [h, w, 3] as they were matched, where that was smaller than [H, W]
    eyes: tuple[np.ndarray, np.ndarray] | None = None


@dataclasses.dataclass(frozen=True)
class StereoDepth:
    """Metric depth of the left eye of an ODS pair; invalid pixels hold `max_distance`."""

    distance: np.ndarray  # float32 [H, W], metres from the camera centre
    disparity: np.ndarray  # float32 [H, W], pixels (col_left - col_right)
    mask: np.ndarray  # bool [H, W]
    confidence: np.ndarray  # float32 [H, W] in 0..1


def split_stereo(image: np.ndarray, layout: StereoLayout) -> tuple[np.ndarray, np.ndarray]:
    """Split a stereo frame into (left, right) eyes: top-bottom has the left eye on top,
    side-by-side and vr180 (two square half-equirect eyes) have it on the left."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"a stereo frame must be [H, W] or [H, W, C], got shape {image.shape}")
    height, width = image.shape[:2]
    if layout == "top-bottom":
        if height % 2 or height < 2:
            raise ValueError(f"a top-bottom stereo frame needs an even height, got {width}x{height}")
        left, right = image[: height // 2], image[height // 2:]
    elif layout in ("side-by-side", "vr180"):
        if width % 2 or width < 2:
            raise ValueError(f"a {layout} stereo frame needs an even width, got {width}x{height}")
        left, right = image[:, : width // 2], image[:, width // 2:]
    else:
        raise ValueError(f"layout must be one of {', '.join(STEREO_LAYOUTS)}, got {layout!r}")
    return left, right


def to_float_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """float32 RGB [H, W, 3] in 0..1 of a gray, RGB or RGBA image (integers scaled by their maximum)."""
    return _to_float_rgb(image, name)


def _to_float_rgb(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name} must be [H, W], [H, W, 3] or [H, W, 4], got shape {image.shape}")
    if np.issubdtype(image.dtype, np.integer):
        image = image[..., :3].astype(np.float32) / np.iinfo(image.dtype).max
    else:
        image = image[..., :3].astype(np.float32, copy=False)
        if not np.isfinite(image).all():
            image = np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image


def check_stereo_pair(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both eyes as float32 RGB 0..1; ValueError if their sizes differ or they are one picture."""
    left_rgb, right_rgb = _to_float_rgb(left, "left eye"), _to_float_rgb(right, "right eye")
    if left_rgb.shape != right_rgb.shape:
        raise ValueError(f"the eyes differ in size: left {left_rgb.shape[1]}x{left_rgb.shape[0]}, "
                         f"right {right_rgb.shape[1]}x{right_rgb.shape[0]}")
    if left_rgb.shape[0] < 8 or left_rgb.shape[1] < 16:
        raise ValueError(f"the eyes are too small to match: {left_rgb.shape[1]}x{left_rgb.shape[0]}")
    same = _share_equal(left_rgb[::8], right_rgb[::8])  # a sparse look settles a clearly different pair
    if same >= 0.99:
        same = _share_equal(left_rgb, right_rgb)
    if same >= SAME_PICTURE_SHARE:
        raise ValueError(
            f"the two eyes are identical (within one 8-bit level on {same:.2%} of the pixels): "
            "this looks like a mono image passed as stereo; use the mono layout")
    return left_rgb, right_rgb


def _share_equal(left_rgb: np.ndarray, right_rgb: np.ndarray) -> float:
    """Share of pixels whose colours agree within one 8-bit level in every channel."""
    levels = np.abs(np.rint(left_rgb * 255) - np.rint(right_rgb * 255)).max(axis=2)
    return float(np.mean(levels <= 1))


def _gray_u8(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def _pad_columns(image: np.ndarray, pad: int, wrap: bool) -> np.ndarray:
    if pad == 0:
        return image
    widths = [(0, 0), (pad, pad)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, widths, mode="wrap" if wrap else "edge")


def _sgbm(left_u8: np.ndarray, right_u8: np.ndarray, min_disparity: int, num_disparities: int,
          block_size: int, smoothness: tuple[float, float]) -> np.ndarray:
    """Raw SGBM disparity (float32 pixels, invalid < min_disparity) of the left image."""
    import cv2

    channels = 1 if left_u8.ndim == 2 else left_u8.shape[2]
    matcher = cv2.StereoSGBM_create(
        minDisparity=min_disparity, numDisparities=num_disparities, blockSize=block_size,
        P1=int(smoothness[0] * channels * block_size**2), P2=int(smoothness[1] * channels * block_size**2),
        disp12MaxDiff=-1, preFilterCap=63, uniquenessRatio=5,
        speckleWindowSize=0, speckleRange=0, mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    return matcher.compute(left_u8, right_u8).astype(np.float32) / 16.0


def refine_subpixel(disparity: np.ndarray, valid: np.ndarray, left: np.ndarray, right: np.ndarray,
                    radius: int) -> np.ndarray:
    """Re-estimate the fraction of each valid disparity from a parabola through the windowed
    sum of squared differences at its nearest integer disparity and both neighbours.

    SGBM's own interpolation of its path-aggregated cost is biased toward whole pixels; the
    SSD of smooth (blurred) images is close to quadratic in the shift, so its parabola is not.
    `left`/`right` are float images whose columns are padded by more than the largest
    |disparity| + 1 + `radius` on each side; pixels in that padding are not refined.
    """
    import cv2

    height, width = disparity.shape
    nearest = np.rint(disparity).astype(np.int32)
    margin = int(np.abs(nearest[valid]).max(initial=0)) + 2
    inner = slice(margin, width - margin)
    wanted = valid.copy()
    wanted[:, :margin + radius] = False
    wanted[:, width - margin - radius:] = False
    pixels = np.flatnonzero(wanted[:, inner])
    if pixels.size == 0:
        return disparity
    pixel_levels = nearest[:, inner].ravel()[pixels]
    # Each level costs a pass over the image: leave the fraction of rare levels as SGBM gave it.
    levels, counts = np.unique(pixel_levels, return_counts=True)
    common = levels[counts >= max(50, pixel_levels.size // 2000)]
    keep = np.isin(pixel_levels, common)
    pixels, pixel_levels = pixels[keep], pixel_levels[keep]
    if pixels.size == 0:
        return disparity
    order = np.argsort(pixel_levels, kind="stable")
    pixels, pixel_levels = pixels[order], pixel_levels[order]
    needed = np.unique(np.concatenate([common - 1, common, common + 1]))
    costs = np.zeros((3, pixels.size), dtype=np.float32)
    channel_sum = np.ones((1, left.shape[2]), np.float32) if left.ndim == 3 else None
    window = (2 * radius + 1, 2 * radius + 1)
    for level in needed.tolist():
        shifted = right[:, margin - level:width - margin - level]  # [x] holds right[x - level]
        difference = cv2.subtract(left[:, inner], shifted)
        squared = cv2.multiply(difference, difference)
        if channel_sum is not None:
            squared = cv2.transform(squared, channel_sum)
        cost = cv2.boxFilter(squared, -1, window).ravel()
        for offset in (-1, 0, 1):  # pixels whose nearest level is level - offset
            first, last = np.searchsorted(pixel_levels, [level - offset, level - offset + 1])
            costs[offset + 1, first:last] = cost[pixels[first:last]]
    curvature = costs[0] - 2 * costs[1] + costs[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = (costs[0] - costs[2]) / (2 * curvature)
    usable = (curvature > 1e-7) & (np.abs(fraction) <= 0.75)
    refined = disparity.copy()
    inner_view = refined[:, inner]
    flat = inner_view.ravel()
    flat[pixels[usable]] = pixel_levels[usable] + np.clip(fraction[usable], -0.5, 0.5)
    refined[:, inner] = flat.reshape(inner_view.shape)
    return refined


def _left_right_residual(disp_left: np.ndarray, disp_right: np.ndarray, valid_left: np.ndarray,
                         valid_right: np.ndarray) -> np.ndarray:
    """|D_L(x) - D_R(x - D_L(x))| per left pixel; +inf where either side has no match."""
    width = disp_left.shape[1]
    target = np.rint(np.arange(width)[None, :] - disp_left).astype(np.int64)
    inside = (target >= 0) & (target < width)
    target = np.clip(target, 0, width - 1)
    back = np.take_along_axis(disp_right, target, axis=1)
    back_valid = np.take_along_axis(valid_right, target, axis=1)
    matched = valid_left & inside & back_valid
    return np.where(matched, np.abs(back - disp_left), np.inf).astype(np.float32)


def _remove_speckles(disparity: np.ndarray, valid: np.ndarray, max_size: int, max_jump: float) -> np.ndarray:
    """Drop connected blobs of fewer than `max_size` pixels whose disparity steps by > max_jump."""
    import cv2

    fixed = np.where(valid, np.rint(disparity * 16), -32768).astype(np.int16)
    cv2.filterSpeckles(fixed, -32768, max_size, int(max_jump * 16))
    return valid & (fixed != -32768)


def fill_from_background(disparity: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Give each invalid pixel the smaller (farther) of the nearest valid disparities left and
    right of it in its row; rows with no valid pixel get the row-wide minimum of the image."""
    height, width = disparity.shape
    columns = np.broadcast_to(np.arange(width), (height, width))
    left_index = np.maximum.accumulate(np.where(valid, columns, -1), axis=1)
    right_index = np.minimum.accumulate(np.where(valid, columns, width)[:, ::-1], axis=1)[:, ::-1]
    far = np.float32(disparity[valid].min()) if valid.any() else np.float32(0)
    from_left = np.where(left_index >= 0,
                         np.take_along_axis(disparity, np.clip(left_index, 0, width - 1), axis=1), np.inf)
    from_right = np.where(right_index < width,
                          np.take_along_axis(disparity, np.clip(right_index, 0, width - 1), axis=1), np.inf)
    filled = np.minimum(from_left, from_right)
    filled = np.where(np.isfinite(filled), filled, far)
    return np.where(valid, disparity, filled).astype(np.float32)


class _GuidedFilter:
    """He et al.'s guided filter with a gray guide; linear in its input, so one set-up serves
    many inputs (the levels of the weighted median)."""

    def __init__(self, guide: np.ndarray, radius: int, eps: float):
        import cv2

        self._cv2 = cv2
        self.ksize = (2 * radius + 1, 2 * radius + 1)
        self.guide = guide.astype(np.float32)
        self.mean_guide = self._box(self.guide)
        variance = self._box(self.guide * self.guide) - self.mean_guide**2
        self.inv_variance = 1.0 / (variance + eps)

    def _box(self, image: np.ndarray) -> np.ndarray:
        return self._cv2.boxFilter(image, -1, self.ksize, borderType=self._cv2.BORDER_REFLECT)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = image.astype(np.float32)
        mean_image = self._box(image)
        a = (self._box(self.guide * image) - self.mean_guide * mean_image) * self.inv_variance
        b = mean_image - a * self.mean_guide
        return self._box(a) * self.guide + self._box(b)


def weighted_median(disparity: np.ndarray, weight: np.ndarray, guide: np.ndarray, *, radius: int,
                    eps: float, step: float = 1.0) -> np.ndarray:
    """Weighted median of `disparity` (per-pixel `weight`) guided by the gray image `guide`,
    at `step` resolution.

    For each level l the guided filter of ``weight * [disparity <= l]`` over that of `weight`
    is the weighted fraction of the window at or below l; the median is the first level where
    it reaches one half (Ma et al., constant time weighted median filtering).
    """
    filt = _GuidedFilter(guide, radius, eps)
    low, high = float(disparity.min()), float(disparity.max())
    levels = low + step * np.arange(int(math.ceil((high - low) / step)) + 1)
    # A level holding no pixel leaves every fraction as it was: nothing new can reach 1/2 there.
    first_level = np.ceil((disparity.ravel() - low) / step - 0.5).astype(np.int64)
    populated = np.bincount(np.clip(first_level, 0, levels.size - 1), minlength=levels.size) > 0
    total = np.maximum(filt(weight), 1e-6)
    result = np.full(disparity.shape, levels[-1], dtype=np.float32)
    done = np.zeros(disparity.shape, dtype=bool)
    for level in levels[:-1][populated[:-1]]:
        fraction = filt(weight * (disparity <= level + step / 2)) / total
        reached = (fraction >= 0.5) & ~done
        result[reached] = level
        done |= reached
        if done.all():
            break
    return result


def _downscale(image: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    if factor == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _colour_u8(rgb: np.ndarray, colour: bool, denoise: bool) -> np.ndarray:
    import cv2

    image = np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)
    if denoise:  # a 3x3 median removes path-tracing fireflies and sensor speckle alike
        image = cv2.medianBlur(image, 3)
    return image if colour else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def match_disparity(left: np.ndarray, right: np.ndarray, *, min_disparity: float, max_disparity: float,
                    wrap: bool = False, block_size: int = 5, colour: bool = False, denoise: bool = False,
                    smoothness: tuple[float, float] = (8.0, 32.0), subpixel_radius: int | None = None,
                    lr_tolerance: float = 1.0, speckle_size: int = 100, speckle_range: float = 2.0,
                    median_radius: int = 4, median_eps: float = 1e-3, median_downscale: int = 1,
                    max_match_width: int | None = None, refine_radius: int | None = None,
                    smooth_radius: int = 4, keep_px: int = 0) -> DisparityMap:
    """Dense disparity (pixels, col_left - col_right) of the left eye along image rows.

    `min_disparity`/`max_disparity` bound the search at full resolution; `wrap` treats columns
    as periodic (equirect eyes). SGBM runs on `colour` or gray images (3x3 median first with
    `denoise`) with penalties `smoothness` = (P1, P2) per channel and block pixel;
    `subpixel_radius` re-fits the fractions (`refine_subpixel`). The image-guided weighted
    median (`median_radius`, computed `median_downscale` times smaller) fills and vets: the mask
    holds left-right consistent matches within a pixel of it, the confidence (0 off the mask)
    falls with both discrepancies. Above `max_match_width` the eyes are matched downscaled and
    the disparity is brought back up guided by the full-resolution image. `refine_radius`:
    then refine at the input's full resolution (`refine_full_resolution`; `sigma` is set), except within
    `keep_px` of the match's jumps (ODS_MATCHING).
    """
    import cv2

    left_rgb, right_rgb = _to_float_rgb(left, "left eye"), _to_float_rgb(right, "right eye")
    height, width = left_rgb.shape[:2]
    if not max_disparity > min_disparity:
        raise ValueError(f"max_disparity ({max_disparity}) must exceed min_disparity ({min_disparity})")
    factor = 1.0 if not max_match_width or width <= max_match_width else width / max_match_width
    small_left, small_right = _downscale(left_rgb, factor), _downscale(right_rgb, factor)
    low = int(math.floor(min_disparity / factor)) - 1
    count = 16 * int(math.ceil((math.ceil(max_disparity / factor) + 2 - low) / 16))
    pad = count + abs(low) + max(block_size, 2 * (subpixel_radius or 0)) + 2

    match_left = _pad_columns(_colour_u8(small_left, colour, denoise), pad, wrap)
    match_right = _pad_columns(_colour_u8(small_right, colour, denoise), pad, wrap)
    disp_left = _sgbm(match_left, match_right, low, count, block_size, smoothness)
    # The right eye's disparity: match the mirrored pair (mirrored right eye as the "left").
    disp_right = _sgbm(match_right[:, ::-1], match_left[:, ::-1], low, count, block_size, smoothness)[:, ::-1]
    residual = _left_right_residual(disp_left, disp_right, disp_left >= low, disp_right >= low)
    valid = residual <= lr_tolerance
    valid = _remove_speckles(disp_left, valid, speckle_size, speckle_range)
    if not wrap:  # the padding is made up: no pixel in it, and no match into it, is real
        target = np.arange(disp_left.shape[1])[None, :] - disp_left
        valid &= (target >= pad) & (target <= disp_left.shape[1] - pad - 1)
        valid[:, :pad] = False
        valid[:, -pad:] = False
    if subpixel_radius:
        blurred = [cv2.GaussianBlur(image.astype(np.float32) / 255, (0, 0), 1.0)
                   for image in (match_left, match_right)]
        disp_left = refine_subpixel(disp_left, valid, *blurred, subpixel_radius)
    filled = fill_from_background(disp_left, valid)
    if valid.any():  # a handful of wild matches would otherwise cost the median many levels
        filled = np.clip(filled, *np.percentile(disp_left[valid], [0.05, 99.95]))

    gray_left = _gray_u8(small_left)
    guide = _pad_columns(gray_left.astype(np.float32) / 255.0, pad, wrap)
    weight = np.where(valid, 1.0, 0.05).astype(np.float32)
    if median_downscale > 1:  # the median only arbitrates; a coarser one is much cheaper
        size = (filled.shape[1] // median_downscale, filled.shape[0] // median_downscale)
        median = weighted_median(cv2.resize(filled, size, interpolation=cv2.INTER_NEAREST),
                                 cv2.resize(weight, size, interpolation=cv2.INTER_AREA),
                                 cv2.resize(guide, size, interpolation=cv2.INTER_AREA),
                                 radius=max(1, median_radius // median_downscale), eps=median_eps)
        median = cv2.resize(median, filled.shape[::-1], interpolation=cv2.INTER_NEAREST)
    else:
        median = weighted_median(filled, weight, guide, radius=median_radius, eps=median_eps)
    # Keep the sub-pixel match where it agrees with the median; elsewhere trust the median.
    disagreement = np.abs(filled - median)
    agree = valid & (disagreement <= 1.0)
    disparity = np.where(agree, filled, median)
    confidence = np.where(agree, (1 - 0.5 * np.minimum(residual / lr_tolerance, 1.0)) * (1 - 0.5 * disagreement), 0)
    inner = slice(pad, pad + gray_left.shape[1])
    disparity, agree, confidence = disparity[:, inner], agree[:, inner], confidence[:, inner]

    matched = DisparityMap(disparity, agree, confidence.astype(np.float32))
    full_size = _to_full_size(matched, small_left, left_rgb, right_rgb, wrap=wrap, refine_radius=refine_radius,
                              smooth_radius=smooth_radius, eps=median_eps, keep_px=keep_px)
    return full_size if factor == 1.0 else dataclasses.replace(full_size, eyes=(small_left, small_right))


def _to_full_size(matched: DisparityMap, small_left: np.ndarray, left_rgb: np.ndarray, right_rgb: np.ndarray, *,
                  wrap: bool, refine_radius: int | None, smooth_radius: int, eps: float, keep_px: int) -> DisparityMap:
    """The match at the input's size: upsampled (if it was matched smaller) and, with `refine_radius`,
    smoothed where it was matched and refined at full resolution; else smoothed edge-aware."""
    import cv2

    height, width = left_rgb.shape[:2]
    disparity, agree, confidence, sigma = matched.disparity, matched.mask, matched.confidence, None
    factor = width / disparity.shape[1]
    keep = None  # where the sub-pixel pass keeps the match: near its jumps (ODS_MATCHING)
    if refine_radius and keep_px:
        from ..postprocess.edges import jump_band, scaled_pixels

        keep = jump_band(np.maximum(disparity, np.float32(KEEP_FLOOR_PX * disparity.shape[1] / 2048)),
                         scaled_pixels(keep_px, disparity.shape[1]), wrap, KEEP_JUMP, window=1)
    if refine_radius:  # the start of the sub-pixel pass: smooth, at the matched size
        smoothed = _edge_aware_smooth(small_left, disparity, smooth_radius, eps, wrap)
        disparity = smoothed if keep is None else np.where(keep, disparity, smoothed)
    if disparity.shape[1] != width:
        disparity = _upsample(disparity, width, height, wrap) * np.float32(factor)
        size = (width, height)
        agree = cv2.resize(agree.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)
        confidence = cv2.resize(confidence.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        if keep is not None:
            keep = cv2.resize(keep.view(np.uint8), size, interpolation=cv2.INTER_NEAREST_EXACT).view(bool)
    if refine_radius:
        refined, sigma = refine_full_resolution(left_rgb, right_rgb, disparity, wrap=wrap, radius=refine_radius,
                                                smooth_radius=smooth_radius, eps=eps)
        disparity = refined if keep is None else np.where(keep, disparity, refined)
    elif factor != 1.0:
        disparity = _edge_aware_smooth(left_rgb, disparity, max(2, round(factor)), eps, wrap)
    return DisparityMap(disparity.astype(np.float32), agree, np.clip(confidence, 0, 1).astype(np.float32), sigma)


class _EdgeAwareSmoother:
    """He's guided filter of full-size disparities with the left eye's gray image as the guide
    (columns padded by wrapping or repeating), set up once for a radius."""

    def __init__(self, gray: np.ndarray, radius: int, eps: float, wrap: bool):
        self.pad, self.wrap, self.width = radius + 2, wrap, gray.shape[1]
        self.filter = _GuidedFilter(_pad_columns(gray, self.pad, wrap), radius=radius, eps=eps)

    def __call__(self, disparity: np.ndarray) -> np.ndarray:
        return self.filter(_pad_columns(disparity, self.pad, self.wrap))[:, self.pad:self.pad + self.width]


def _gray(rgb: np.ndarray) -> np.ndarray:
    """float32 luminance in 0..1 of a float RGB image."""
    import cv2

    return np.clip(cv2.cvtColor(np.asarray(rgb, np.float32), cv2.COLOR_RGB2GRAY), 0.0, 1.0)


def _edge_aware_smooth(left_rgb: np.ndarray, disparity: np.ndarray, radius: int, eps: float, wrap: bool) -> np.ndarray:
    """One edge-aware smoothing of a full-size disparity (`_EdgeAwareSmoother`)."""
    return _EdgeAwareSmoother(_gray(left_rgb), radius, eps, wrap)(disparity)


def refine_full_resolution(left_rgb: np.ndarray, right_rgb: np.ndarray, disparity: np.ndarray, *, wrap: bool,
                           radius: int = 8, smooth_radius: int = 4, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Coarse to fine: a smooth full-size disparity (edge-aware smoothed where it was matched)
    refined to sub-pixel by one cost fit at the input's resolution on the eyes' luminance
    (subpixel.cost_fit), then smoothed edge-aware; (disparity, sigma in pixels).

    `radius` and `smooth_radius` are pixels of a 2048-wide eye, scaled to the input's width (the
    same angles), never below their value."""
    from .subpixel import cost_fit, prepare_eye

    scale = max(1.0, left_rgb.shape[1] / 2048)
    left_gray = _gray(left_rgb)
    fit = cost_fit(prepare_eye(left_gray), prepare_eye(_gray(right_rgb)), disparity, wrap=wrap,
                   radius=max(1, round(radius * scale)))
    smoother = _EdgeAwareSmoother(left_gray, max(1, round(smooth_radius * scale)), eps, wrap)
    return smoother(fit.disparity), fit.sigma


def _upsample(image: np.ndarray, width: int, height: int, wrap: bool) -> np.ndarray:
    """Bilinear resize of a float32 [h, w] map to [height, width], pixel centres aligned;
    columns wrap around when `wrap`."""
    import cv2

    small_height, small_width = image.shape
    cols = ((np.arange(width, dtype=np.float32) + 0.5) * (small_width / width) - 0.5)
    rows = np.clip((np.arange(height, dtype=np.float32) + 0.5) * (small_height / height) - 0.5,
                   0, small_height - 1)
    if wrap:
        source, cols = _pad_columns(image, 1, True), cols + 1
    else:
        source, cols = image, np.clip(cols, 0, small_width - 1)
    map_x = np.broadcast_to(cols[None, :], (height, width))
    map_y = np.broadcast_to(rows[:, None], (height, width))
    return cv2.remap(np.ascontiguousarray(source, dtype=np.float32), np.ascontiguousarray(map_x),
                     np.ascontiguousarray(map_y), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def estimate_stereo_perspective(left: np.ndarray, right: np.ndarray, *, max_disparity: float | None = None,
                                min_disparity: float = 0.0, check_eye_order: bool = True,
                                **options) -> tuple[np.ndarray, np.ndarray]:
    """Dense disparity (pixels, col_left - col_right) and validity mask of a rectified pair.

    `max_disparity` defaults to a quarter of the image width. Warns when the eyes look swapped.
    """
    left_rgb, right_rgb = check_stereo_pair(left, right)
    if max_disparity is None:
        max_disparity = left_rgb.shape[1] / 4
    if check_eye_order:
        warn_if_eyes_swapped(left_rgb, right_rgb, min_disparity, max_disparity, wrap=False)
    result = match_disparity(left_rgb, right_rgb, min_disparity=min_disparity,
                             max_disparity=max_disparity, wrap=False, **options)
    return result.disparity, result.mask


def warn_if_eyes_swapped(left_rgb: np.ndarray, right_rgb: np.ndarray, lowest: float, highest: float,
                          wrap: bool) -> None:
    """Warn when most confident matches of a coarse, sign-symmetric search lie below `lowest`
    (the least disparity the geometry allows): the eyes are then most likely swapped."""
    factor = max(1.0, left_rgb.shape[1] / 512)
    reach = max(abs(lowest), abs(highest)) / factor + 4
    probe = match_disparity(_downscale(left_rgb, factor), _downscale(right_rgb, factor),
                            min_disparity=-reach, max_disparity=reach, wrap=wrap, median_radius=2)
    matched = probe.disparity[probe.mask]
    if matched.size < 100:
        return
    impossible = float(np.mean(matched < lowest / factor - 1.0))
    if impossible > 0.5:
        warnings.warn(
            f"{impossible:.0%} of the matched disparities are negative (beyond infinity): the left "
            "and right eyes look swapped; check the stereo layout's eye order", stacklevel=3)


def find_stereo_sky(disparity_px: np.ndarray, matched: np.ndarray, left_rgb: np.ndarray) -> np.ndarray:
    """Bool [H, W]: the sky of an ODS left eye, where SGBM's smoothness invents small disparities.

    Smooth pixels connected to the zenith (panorama.infinity; whatever SGBM matched there,
    a textureless region's matches are noise) are sky when what surrounds them is far: the
    median disparity of the matched ring around them under SKY_DISPARITY_PX (pixels of the
    matched eye). A plain ceiling, enclosed by near walls, is not.
    """
    import cv2

    from ..panorama.infinity import WORK_HEIGHT, connected_sky

    height, width = disparity_px.shape
    scale = min(1.0, WORK_HEIGHT / height)
    size = (max(2, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(disparity_px.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    good = cv2.resize(matched.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    picture = cv2.resize(left_rgb, size, interpolation=cv2.INTER_AREA)
    # Matches in a textureless sky are noise, consistent or not: every pixel is a candidate
    # and the smooth ones decide (connected_sky keeps smooth pixels only).
    sky = connected_sky(np.ones_like(good), picture)
    if not sky.any():
        return np.zeros((height, width), bool)
    ring = cv2.dilate(np.pad(sky, ((0, 0), (4, 4)), mode="wrap").astype(np.uint8), np.ones((9, 9), np.uint8))
    ring = ring[:, 4:-4].astype(bool) & ~sky & good
    if ring.any() and np.median(small[ring]) >= SKY_DISPARITY_PX:
        return np.zeros((height, width), bool)
    return cv2.resize(sky.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def measurable_disparity(matched: DisparityMap, scale: float = 1.0) -> np.ndarray:
    """Bool: disparities of at least MIN_MEASURABLE_DISPARITY_PX of the matched eye (`scale`: input
    pixels per matched pixel) that the sub-pixel pass knows to MAX_RELATIVE_SIGMA of themselves."""
    measurable = matched.disparity >= MIN_MEASURABLE_DISPARITY_PX * scale
    if matched.sigma is not None:
        with np.errstate(invalid="ignore"):
            measurable &= matched.sigma <= MAX_RELATIVE_SIGMA * matched.disparity
    return measurable


def snap_match_edges(matched: DisparityMap, left_rgb: np.ndarray, right_rgb: np.ndarray, rows: np.ndarray | None,
                     scale: float, wrap: bool, turn: int | None = None, segment: bool = False) -> DisparityMap:
    """The match with its occlusion edges re-matched (stereo.occlusion_edges) on the eyes' luminance, blurred
    a little (as for the sub-pixel pass), then its jumps cut at the left plate's colour edges
    (stereo.colour_edges). Rows are epipolar lines; `rows`: those stereo measures (None: all); `scale`:
    input pixels per matched pixel; `wrap`: columns are periodic (ODS eyes); `turn`: the eyes' pixels per
    360 degrees along the rows (default: their width, equirect eyes); `segment`: then settle the jumps by
    a colour segmentation of the left plate (stereo.segmented_edges).

    Eyes wider than they were matched (`scale` > 1) are worked on at the matched size (`matched.eyes`,
    where the match kept them): there a jump's ramp spans `scale` times fewer pixels, so the step finds
    more of them, for about 1 / scale**2 of the work. The pixels it changes are brought back up
    (nearest, pixel centres aligned) and the others keep their full-size disparity."""
    if scale <= 1.0:
        return _snap_edges(matched, left_rgb, right_rgb, rows, scale, wrap, turn, segment)
    import cv2

    height, width = matched.disparity.shape
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    factor = np.float32(width / size[0])

    def down(values: np.ndarray) -> np.ndarray:  # the matcher's own downscale (_downscale)
        return cv2.resize(values, size, interpolation=cv2.INTER_AREA)

    row_source, col_source = _nearest_source(height, size[1]), _nearest_source(width, size[0])
    nearest_row, nearest_col = _nearest_source(size[1], height), _nearest_source(size[0], width)
    # Only whether a pixel is measurable depends on sigma: the nearest full-size pixel's tells it.
    sigma = None if matched.sigma is None else matched.sigma[nearest_row[:, None], nearest_col] / factor
    disparity = down(matched.disparity) / factor
    # The step reads neither the confidence nor the eyes of the match.
    small = DisparityMap(disparity, down(matched.mask.view(np.uint8)) > 0, np.zeros_like(disparity), sigma)
    small_rows = None if rows is None else np.asarray(rows, bool)[nearest_row]
    same = matched.eyes is not None and matched.eyes[0].shape[:2] == small.disparity.shape
    small_left, small_right = matched.eyes if same else (down(left_rgb), down(right_rgb))
    snapped = _snap_edges(small, small_left, small_right, small_rows, 1.0, wrap,
                          None if turn is None else max(1, round(turn / float(factor))), segment)
    ys, xs = np.nonzero((snapped.disparity != small.disparity) | (snapped.mask != small.mask))
    disparity, mask = matched.disparity.copy(), matched.mask.copy()
    sigma = None if matched.sigma is None else matched.sigma.copy()
    values, on_mask = snapped.disparity[ys, xs] * factor, snapped.mask[ys, xs]
    # Each changed pixel's full-size pixels: those whose nearest matched-size pixel it is.
    row_first, row_count = _spans(row_source, size[1])
    col_first, col_count = _spans(col_source, size[0])
    for dy in range(int(row_count.max())):
        for dx in range(int(col_count.max())):
            pick = (row_count[ys] > dy) & (col_count[xs] > dx)
            at = (row_first[ys[pick]] + dy, col_first[xs[pick]] + dx)
            disparity[at], mask[at] = values[pick], on_mask[pick]
            if sigma is not None:
                sigma[at] = 0.0
    return dataclasses.replace(matched, disparity=disparity, mask=mask, sigma=sigma, eyes=None)


def _nearest_source(size: int, source_size: int) -> np.ndarray:
    """Per pixel of a `size`-long axis, the nearest of a `source_size`-long one (pixel centres aligned)."""
    return np.minimum(((np.arange(size) + 0.5) * (source_size / size)).astype(np.int64), source_size - 1)


def _spans(source: np.ndarray, source_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per source pixel: the first pixel whose nearest it is (`source` from _nearest_source), and how many."""
    return np.searchsorted(source, np.arange(source_size)), np.bincount(source, minlength=source_size)


def _snap_edges(matched: DisparityMap, left_rgb: np.ndarray, right_rgb: np.ndarray, rows: np.ndarray | None,
                scale: float, wrap: bool, turn: int | None, segment: bool = False) -> DisparityMap:
    """snap_match_edges at the eyes' own size."""
    import cv2

    from ..parallel_rows import map_threads
    from .colour_edges import snap_to_colour_edges
    from .occlusion_edges import snap_stereo_edges
    from .subpixel import BLUR_SIGMA

    def blurred_gray(eye: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(_gray(eye), (0, 0), BLUR_SIGMA)[..., None]

    left, right = map_threads(blurred_gray, (left_rgb, right_rgb))
    disparity, mask, decided = snap_stereo_edges(matched.disparity, matched.mask, left, right, wrap=wrap, rows=rows,
                                                 turn=turn)
    # Only disparities the mask will keep stand for a surface: the decided ones and the measurable matches.
    reliable = mask & (decided | measurable_disparity(matched, scale))
    disparity, mask, cut = snap_to_colour_edges(disparity, mask, left_rgb, wrap=wrap, reliable=reliable, rows=rows,
                                            turn=turn)
    if segment:
        from .segmented_edges import segment_jumps

        disparity, mask, segmented = segment_jumps(disparity, mask, left_rgb, wrap=wrap, reliable=reliable | cut,
                                                   rows=rows, turn=turn)
        cut |= segmented
    # The decided pixels took a surface's disparity: the sub-pixel fit's precision is not theirs.
    decided |= cut
    sigma = None if matched.sigma is None else np.where(decided, 0.0, matched.sigma).astype(np.float32)
    return dataclasses.replace(matched, disparity=disparity, mask=mask, sigma=sigma)


def _ods_pixel_disparity(distance: float, theta: np.ndarray, width: int, **geometry) -> np.ndarray:
    from .ods_geometry import ods_disparity_from_distance

    radians = ods_disparity_from_distance(np.full(theta.shape, distance), theta, **geometry)
    return radians * width / (2 * np.pi)


def estimate_stereo_equirect(left: np.ndarray, right: np.ndarray, *, ipd: float = 0.064,
                             pole_merge: tuple[float, float] | None = (60.0, 75.0),
                             convergence_distance: float | None = None, min_distance: float = 0.5,
                             max_distance: float = 100.0, max_match_width: int | None = 2048,
                             check_eye_order: bool = True, edges: bool = True, segment: bool = False,
                             find_sky: bool = True, **options) -> StereoDepth:
    """Metric distance of the left eye of an ODS equirect pair (each eye H x 2H, same size).

    `ipd` is the eye separation in metres, `pole_merge` Blender's (from, to) pole-merge angles in
    degrees (None: off), `convergence_distance` None for parallel eyes. Objects nearer than
    `min_distance` are out of the search range; invalid pixels (pole rows, unmatched, beyond
    `max_distance`) get `max_distance` and mask False. `edges`: re-match the pixels near depth jumps
    and cut each jump at the plate's colour edge, so that occlusion edges lie on the plate's
    (stereo.occlusion_edges, stereo.colour_edges; False: the block matcher's fattened edges); with
    `segment`, then settle them by a colour segmentation of the plate (stereo.segmented_edges).
    `find_sky`: False leaves the stereo's own sky search out (the caller knows the sky: stereo-guided
    depth has the network's), so that sky the matcher filled in may stay on the mask.
    """
    left_rgb, right_rgb = check_stereo_pair(left, right)
    height, width = left_rgb.shape[:2]
    if width != 2 * height:
        raise ValueError(f"an equirect eye must be twice as wide as high, got {width}x{height}")
    if not 0 < min_distance < max_distance:
        raise ValueError(f"need 0 < min_distance < max_distance, got {min_distance}, {max_distance}")
    geometry = dict(ipd=ipd, pole_merge=pole_merge, convergence_distance=convergence_distance)
    informative = ods_informative_rows(height, pole_merge)
    theta = np.pi * (np.arange(height) + 0.5) / height
    nearest = _ods_pixel_disparity(min_distance, theta[informative], width, **geometry)
    farthest = _ods_pixel_disparity(max_distance, theta[informative], width, **geometry)
    highest, lowest = float(nearest.max()), float(min(0.0, farthest.min()))
    if check_eye_order:
        warn_if_eyes_swapped(left_rgb, right_rgb, lowest, highest, wrap=True)
    settings = dict(ODS_MATCHING, **options)
    matched = match_disparity(left_rgb, right_rgb, min_disparity=lowest - 1.0, max_disparity=highest,
                              wrap=True, max_match_width=max_match_width, **settings)
    matched_width = min(width, max_match_width or width)
    if edges:
        matched = snap_match_edges(matched, left_rgb, right_rgb, informative, width / matched_width, wrap=True,
                                   segment=segment)
    radians = matched.disparity * np.float32(2 * np.pi / width)
    distance = ods_distance_from_disparity(radians, theta[:, None], max_distance=max_distance, **geometry)
    measurable = measurable_disparity(matched, width / matched_width)
    mask = matched.mask & informative[:, None] & (distance < max_distance) & measurable
    if find_sky:
        mask &= ~find_stereo_sky(matched.disparity * np.float32(matched_width / width), matched.mask, left_rgb)
    if mask.mean() < LOW_COVERAGE_WARNING:
        warnings.warn(f"only {mask.mean():.1%} of the frame has a measurable stereo disparity (at least "
                      f"{MIN_MEASURABLE_DISPARITY_PX} px): most of it is sky or far field, written at the far "
                      "distance with mask 0", stacklevel=2)
    distance = np.where(mask, distance, max_distance).astype(np.float32)
    confidence = np.where(mask, matched.confidence, 0.0).astype(np.float32)
    return StereoDepth(distance=distance, disparity=matched.disparity, mask=mask, confidence=confidence)
