"""The 360 fusion and the post stage on the estimator's torch device (estimators.device).

`build_frame_estimator` picks `DeviceFusionFrameEstimator` whenever a 360 frame's estimator
runs on a torch device (`frame_estimators.runs_on_torch_device`: it has a torch `device` and
`predict_tensor`, as every registry network has, on the CPU as on a GPU); a plug-in that returns numpy keeps the numpy trip
(`FusionFrameEstimator`). The two give the same depth within float rounding and the
same masks (tests/engine/test_device_path.py); the sidecar's options are the same too, so
a run may resume on either.

A frame's prediction stays on the device between the estimate and post stages
(`DevicePrediction`, with the frame itself for the stabiliser); the post stage stabilises and
calibrates there and brings the three maps back through pinned memory. Options whose filters
exist only on the host (smoothing, edge refinement) take the host's post stage.

Frames per estimate call: 1 on a CPU (the stages' threads already overlap), on a CUDA device
as many as the memory plan allows (device.memory), views per network call likewise; an
out-of-memory error halves them and retries, and later calls keep the smaller sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..device import calibration as device_calibration
from ..device import memory, transfer
from ..device.fusion import estimate_frames, layout_views, resolve_options, trip_threads
from ..device.reprojection import sample_points
from ..device.temporal import DeviceStabiliser
from ..errors import BadInputError
from .frame_depth import FrameDepth, camera_record, make_stabiliser, postprocess_frame
from .frame_estimators import FramePrediction, FusionFrameEstimator
from .settings import DepthSettings

# Frames per estimate call on a CUDA device at most (the plan may allow fewer).
MAX_FRAMES_PER_CALL = 4


@dataclass(frozen=True)
class DevicePrediction:
    """One frame's fused disparity and mask on the device, and the frame there (for the stabiliser)."""

    disparity: object
    valid: object
    frame: object
    filled: bool = False

    def to_host(self) -> FramePrediction:
        return FramePrediction(self.disparity.cpu().numpy(), self.valid.cpu().numpy(), self.filled)


def device_post(settings: DepthSettings) -> bool:
    """Whether the post stage runs on the device for these settings (else the host's)."""
    return settings.calibrated and settings.smoothing == "none" and not settings.refine and settings.edges == "none"


class DeviceFusionFrameEstimator(FusionFrameEstimator):
    """FusionFrameEstimator whose trip (and post stage) runs on the estimator's torch device."""

    def __init__(self, estimator, views="cube", **fusion_options):
        super().__init__(estimator, views, **fusion_options)
        self.device = estimator.device
        self.batch_size = 1
        self.view_batch = int(getattr(estimator, "batch_size", 4))
        self._planned: tuple[int, int] | None = None

    def _plan(self, height: int, width: int, layout) -> None:
        """Frames and views per call for this frame size, from the device's memory (CUDA only)."""
        capacity = memory.device_capacity(self.device)
        if capacity is None or self._planned == (height, width):
            return
        network = getattr(self.estimator, "network", None)
        parameters = sum(p.numel() for p in network.parameters()) if network is not None else 100_000_000
        precision = getattr(self.estimator, "precision", "fp16")
        plan = memory.plan_batches(
            height, width, len(layout), layout[0].width, preset=self.views if isinstance(self.views, str) else "ico",
            weights_bytes=parameters * 4, capacity_bytes=capacity, max_frames=MAX_FRAMES_PER_CALL,
            view_bytes=memory.network_view_bytes(parameters, max(layout[0].width, 518), precision))
        self.batch_size, self.view_batch = plan.frames, plan.views
        self._planned = (height, width)

    def _shrink_views(self, views: int) -> None:
        self.view_batch = views

    def estimate(self, frames: np.ndarray) -> list[DevicePrediction]:
        """Fused predictions of equirect frames [N, H, W, 3], kept on the device."""
        frames = np.asarray(frames)
        try:
            options = resolve_options(self.estimator, calibrate=False, **self.fusion_options)
            layout = layout_views(self.estimator, self.views, *frames.shape[1:3])
        except ValueError as error:
            raise BadInputError(str(error)) from None
        self._plan(*frames.shape[1:3], layout)
        results = memory.run_batched(lambda part: self._estimate(part, layout, options), frames,
                                     self.batch_size, device=self.device, what="frame", on_shrink=self._shrink_frames)
        return results

    def _shrink_frames(self, frames: int) -> None:
        self.batch_size = frames

    def _estimate(self, frames: np.ndarray, layout, options) -> list[DevicePrediction]:
        uploaded = transfer.upload(np.asarray(frames, np.float32), self.device)
        try:
            fused = estimate_frames(frames, self.estimator, layout, options, device=self.device,
                                    batch_size=self.view_batch, on_shrink=self._shrink_views, on_device=uploaded)
        except ValueError as error:
            if isinstance(error, BadInputError):
                raise
            raise BadInputError(str(error)) from None
        self.last_timings = {k: v * len(fused) for k, v in fused[0].timings.items()}
        return [DevicePrediction(f.disparity, f.mask, uploaded[i]) for i, f in enumerate(fused)]

    def make_stabiliser(self, settings: DepthSettings):
        """The stabiliser of the post stage this estimator's predictions take."""
        if settings.stabiliser is None or not device_post(settings):
            return make_stabiliser(settings)
        kind = "metric-distance" if settings.metric else settings.kind
        return DeviceStabiliser(kind, settings.near, settings.far, settings.stabiliser, wrap=settings.wrap)

    def postprocess_frame(self, number: int, prediction: DevicePrediction, rgb: np.ndarray, settings: DepthSettings,
                          stabiliser, keep: bool = True, camera=None) -> FrameDepth | None:
        """frame_depth.postprocess_frame for a prediction on the device (`camera`: the frame's pose)."""
        if not device_post(settings):
            return postprocess_frame(number, prediction.to_host(), rgb, settings, stabiliser, keep, camera)
        with trip_threads(self.device):
            return postprocess_on_device(number, prediction, settings, stabiliser, keep, camera)


def postprocess_on_device(number: int, prediction: DevicePrediction, settings: DepthSettings, stabiliser,
                          keep: bool = True, camera=None) -> FrameDepth | None:
    """frame_depth.postprocess_frame on the device, for a full-size prediction and device_post settings.

    The host's hole filling is left out: with no smoothing and no resampling its values
    reach no output (the stabiliser reads only valid pixels, calibration puts `far` and
    disparity 0 everywhere else), which the equivalence tests check file for file.
    """
    import torch

    disparity = prediction.disparity.to(torch.float32)
    valid = prediction.valid & device_calibration.finite(disparity)
    if not bool(valid.any()):
        disparity = torch.zeros_like(disparity)
    stabilised = None
    if stabiliser is not None:
        stabilised = stabiliser.push(number, disparity, valid, prediction.frame, camera=camera)
    if not keep:
        return None
    record = None if camera is None else camera_record(camera, stabilised, disparity, valid, settings,
                                                      sample=sample_points)
    if stabilised is not None:
        disparity = stabilised.disparity
    if settings.shot_units:
        distance, mask = device_calibration.metric_to_distance(disparity, settings.near, settings.far, valid=valid)
    else:
        distance, mask = device_calibration.relative_to_distance(disparity, settings.near, settings.far, valid=valid)
    if settings.sky == "mask":
        distance, mask = device_calibration.mark_far_field(distance, mask, settings.far)
    inverse = torch.where(mask, 1.0 / distance, torch.zeros((), device=distance.device))
    copies = [transfer.download(t) for t in (distance, inverse, mask)]
    distance, inverse, mask = (copy.array() for copy in copies)
    return FrameDepth(distance, inverse, mask, camera=record)
