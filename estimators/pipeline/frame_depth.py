"""The post stage of one frame: fill, resample, smooth, snap depth edges to the plate's, stabilise, calibrate.

`FrameDepth` is what gets written: `distance` (None when uncalibrated), `disparity` and
`mask`, obeying DESIGN.md's depth kinds: where the mask is 1, disparity = 1/distance;
elsewhere disparity is 0 and distance is `far`. Uncalibrated relative output (no
distance) is the estimator's own disparity, never negative: where the mask is 0 it
holds the fill (the estimator's own, or the post stage's), 0 where it was <= 0.
`camera`: the frame's pose from the camera solve, as the sidecar records it
(`camera_record`), when the solve ran.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import postprocess
from ..postprocess.calibration import metric_to_distance, relative_to_distance
from ..postprocess.edges import snap_edges
from ..video.temporal import StabilisedFrame, TemporalStabiliser, metres_per_unit, sample_at
from .frame_estimators import FramePrediction
from .settings import DepthSettings


@dataclass(frozen=True)
class FrameDepth:
    """One frame's depth, ready to write: float32 [H, W] arrays and the bool mask."""

    distance: np.ndarray | None
    disparity: np.ndarray
    mask: np.ndarray
    camera: dict | None = None


def make_stabiliser(settings: DepthSettings) -> TemporalStabiliser | None:
    """The temporal stabiliser one source's frames go through, or None."""
    if settings.stabiliser is None:
        return None
    kind = "metric-distance" if settings.metric else settings.kind  # the stabiliser filters any metres alike
    return TemporalStabiliser(kind, settings.near, settings.far, settings.stabiliser, wrap=settings.wrap)


def _full_size(prediction: FramePrediction, rgb: np.ndarray, settings: DepthSettings) -> tuple[np.ndarray, np.ndarray]:
    """The prediction with its holes filled, at the frame's size (edge-aware or bilinear), smoothed."""
    height, width = rgb.shape[:2]
    valid = np.asarray(prediction.valid, bool) & np.isfinite(prediction.disparity)
    disparity = prediction.disparity
    if valid.any() and not valid.all() and not prediction.filled:
        disparity = postprocess.fill_holes(disparity, valid, wrap=settings.wrap)
    elif not valid.any():
        disparity = np.zeros_like(disparity)
    if disparity.shape != (height, width):
        if settings.upsampling == "edge-aware":
            disparity = postprocess.joint_bilateral_upsample(disparity, rgb, wrap=settings.wrap)
        else:
            disparity = postprocess.bilinear_upsample(disparity, height, width, wrap=settings.wrap)
        valid = postprocess.upsample_valid(valid, height, width)
    elif settings.refine:
        disparity = postprocess.refine_edges(disparity, rgb, wrap=settings.wrap)
    disparity = postprocess.smooth(disparity, settings.smoothing, wrap=settings.wrap)
    if settings.edges != "none" and settings.calibrated:
        disparity, valid = snap_edges(disparity, valid, rgb, wrap=settings.wrap, fattened=settings.edges == "fattened")
    return disparity, valid


def calibrate(disparity: np.ndarray, valid: np.ndarray, settings: DepthSettings) -> FrameDepth:
    """Distance, disparity and mask of a post-processed disparity map (module docstring)."""
    if not settings.calibrated:
        positive = np.isfinite(disparity) & (disparity > 0)
        return FrameDepth(None, np.where(positive, disparity, 0.0).astype(np.float32), valid & positive)
    if settings.shot_units:
        distance, mask = metric_to_distance(disparity, settings.near, settings.far, valid=valid)
    else:
        distance, mask = relative_to_distance(disparity, settings.near, settings.far, valid=valid)
    if settings.sky == "mask":
        distance, mask = postprocess.mark_far_field(distance, mask, settings.far)
    inverse = np.zeros(distance.shape, np.float32)
    np.divide(np.float32(1.0), distance, out=inverse, where=mask)
    return FrameDepth(distance, inverse, mask)


def camera_record(camera, stabilised: StabilisedFrame | None, disparity: np.ndarray, valid: np.ndarray,
                  settings: DepthSettings, *, sample=sample_at) -> dict:
    """A frame's pose for the sidecar: its CameraFrame's record, with the location in metres for metric depth.

    `alignment`: what the stabiliser aligned the frame to ("structure", "window"); for
    metric depth `metres_per_unit` converts the solve's units (from the frame's own
    depth at the solve's points, steadied by the stabiliser). `sample`: temporal.sample_at, or its
    device twin for maps on a torch device.
    """
    record = camera.record()
    if stabilised is not None:
        record["alignment"] = stabilised.reference
    if settings.metric:
        metres = stabilised.metres_per_unit if stabilised is not None else \
            metres_per_unit(disparity, valid, camera, 30, sample=sample)
        record["metres_per_unit"] = metres
        if metres is not None:
            record["location"] = np.round(np.asarray(camera.location) * metres, 9).tolist()
    return record


def postprocess_frame(number: int, prediction: FramePrediction, rgb: np.ndarray, settings: DepthSettings,
                      stabiliser: TemporalStabiliser | None, keep: bool = True, camera=None) -> FrameDepth | None:
    """Frame `number`'s depth; None where the frame is only context for the stabiliser (`keep` False).

    `camera`: the frame's CameraFrame (camera solve), which the stabiliser follows.
    """
    disparity, valid = _full_size(prediction, rgb, settings)
    stabilised = None
    if stabiliser is not None:
        stabilised = stabiliser.push(number, disparity, valid, rgb, camera=camera)
    if not keep:
        return None
    depth = calibrate(disparity if stabilised is None else stabilised.disparity, valid, settings)
    if camera is not None:
        depth = replace(depth, camera=camera_record(camera, stabilised, disparity, valid, settings))
    return depth
