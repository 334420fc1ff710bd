"""Metric depth of VR180 stereo: two parallel half-equirect eyes (vr180_geometry).

Both eyes are resampled onto their rectified grids (rows are the epipolar planes through
the baseline), matched along the rows by the same matcher as omni-directional stereo
(matching.match_disparity, no column wrap), turned into distance from the left eye, and
brought back to the left eye's own half-equirect pixels. Toward the epipoles (the left and
right edges of the field, looking along the baseline) every disparity falls below what can
be measured and the mask says so.
"""

from __future__ import annotations

import warnings

import numpy as np

from .matching import (
    LOW_COVERAGE_WARNING,
    MIN_MEASURABLE_DISPARITY_PX,
    ODS_MATCHING,
    StereoDepth,
    check_stereo_pair,
    find_stereo_sky,
    match_disparity,
    measurable_disparity,
    snap_match_edges,
    warn_if_eyes_swapped,
)
from .vr180_geometry import (
    rectified_angles,
    rectify,
    unrectify,
    vr180_disparity_from_distance,
    vr180_distance_from_disparity,
)


def check_vr180_eye(width: int, height: int) -> None:
    """ValueError unless a VR180 eye is square (180 x 180 degrees), naming the likely layout."""
    if width == height:
        return
    if width == 2 * height:
        hint = ("each eye is 2:1, a full 360 equirect: this looks like 360 side-by-side stereo "
                "(--layout side-by-side)")
    elif 2 * width == height:
        hint = ("each eye is 1:2 and the frame square: this looks like 360 top-bottom stereo "
                "(--layout top-bottom)")
    else:
        hint = "a VR180 frame is two square eyes side by side, twice as wide as high"
    raise ValueError(f"a VR180 eye must be square (180 x 180 degrees), got {width}x{height}; {hint}")


def estimate_stereo_vr180(left: np.ndarray, right: np.ndarray, *, ipd: float = 0.064, min_distance: float = 0.5,
                          max_distance: float = 100.0, max_match_width: int | None = 2048,
                          check_eye_order: bool = True, edges: bool = True, segment: bool = False,
                          **options) -> StereoDepth:
    """Metric distance from the left eye of a VR180 pair (each eye W x W, the same size).

    `ipd`: the eyes' separation in metres. Objects nearer than `min_distance` are out of the
    search range; invalid pixels (unmatched, toward the epipoles, beyond `max_distance`, sky)
    get `max_distance` and mask False. `disparity` is in pixels of the rectified eye. `edges`: the
    depth jumps re-matched and cut at the plate's colour edges on the rectified eyes, as for ODS eyes
    (matching.snap_match_edges; False: the block matcher's fattened edges); `segment`: then settled by a
    colour segmentation of the left eye (stereo.segmented_edges).
    """
    left_rgb, right_rgb = check_stereo_pair(left, right)
    size = left_rgb.shape[0]
    check_vr180_eye(left_rgb.shape[1], size)
    if not 0 < min_distance < max_distance:
        raise ValueError(f"need 0 < min_distance < max_distance, got {min_distance}, {max_distance}")
    rect_left, rect_right = rectify(left_rgb), rectify(right_rgb)
    _, gamma = rectified_angles(size)
    pixels = size / np.pi
    highest = float(vr180_disparity_from_distance(min_distance, gamma, ipd=ipd).max() * pixels)
    if check_eye_order:
        warn_if_eyes_swapped(rect_left, rect_right, 0.0, highest, wrap=False)
    settings = dict(ODS_MATCHING, **options)
    matched = match_disparity(rect_left, rect_right, min_disparity=-1.0, max_disparity=highest, wrap=False,
                              max_match_width=max_match_width, **settings)
    matched_width = min(size, max_match_width or size)
    if edges:
        matched = snap_match_edges(matched, rect_left, rect_right, None, size / matched_width, wrap=False,
                                   turn=2 * size, segment=segment)  # a rectified row spans 180 degrees
    radians = matched.disparity * np.float32(1.0 / pixels)
    distance = vr180_distance_from_disparity(radians, gamma[None, :], ipd=ipd, max_distance=max_distance)
    measurable = measurable_disparity(matched, size / matched_width)
    usable = matched.mask & measurable & (distance < max_distance)
    inverse = np.where(usable, 1.0 / distance, np.nan).astype(np.float32)
    back = unrectify(inverse, size)  # bilinear: a pixel next to an unusable one is unusable (NaN)
    mask = np.isfinite(back)
    disparity_px = unrectify(matched.disparity.astype(np.float32), size)
    sky = find_stereo_sky(disparity_px * np.float32(matched_width / size), mask, left_rgb)
    mask &= ~sky
    if mask.mean() < LOW_COVERAGE_WARNING:
        warnings.warn(f"only {mask.mean():.1%} of the frame has a measurable stereo disparity (at least "
                      f"{MIN_MEASURABLE_DISPARITY_PX} px): most of it is sky or far field, written at the far "
                      "distance with mask 0", stacklevel=2)
    out = np.full((size, size), np.float32(max_distance))
    np.divide(np.float32(1.0), back, out=out, where=mask)
    confidence = np.where(mask, unrectify(matched.confidence, size), 0.0).astype(np.float32)
    return StereoDepth(distance=np.minimum(out, np.float32(max_distance)), disparity=disparity_px, mask=mask,
                       confidence=np.clip(confidence, 0, 1))
