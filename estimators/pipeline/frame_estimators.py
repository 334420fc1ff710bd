"""Frame estimators: what the pipeline's estimate stage calls, one adapter per way of seeing a frame.

Each maps whole RGB frames to a `FramePrediction` (disparity and where it is valid):

- `PlainFrameEstimator`: an estimator (DESIGN.md protocol) run on the whole frame with
  its rays: an ordinary photo (`perspective`, pinhole rays) or a 360 frame seen at once.
- `FusionFrameEstimator`: a 360 frame through overlapping views, aligned and blended
  (panorama.fusion).
- `StereoFrameEstimator`: a stereo frame (both eyes in one picture) through the stereo
  matcher; the depth belongs to the left eye (`depth_frame`).
- `StereoGuidedFrameEstimator` (guided_estimator): a stereo frame through the stereo
  matcher and a network fused on the left eye, the network's disparity mapped to the
  stereo's metres (stereo.guided): dense metric depth with the network's edges.
- `ClipFrameEstimator`: a clip estimator (`predict_clip`: Video Depth Anything, or a plug-in)
  on an ordinary video, through the official windows (video.clip_windows).
- `ViewStreamFrameEstimator`: a clip estimator on 360 video, each view a stream
  (video.view_streams).

The clip adapters are *streaming*: a window gives its frames only once later frames are in,
so instead of `estimate` the pipeline calls `push(number, frame)` for each frame in order
and `finish()` at the end, each returning the (number, FramePrediction) pairs that became
final (`reset()` before each input), and asks `reach(number)` which frames must be pushed for frame `number` to come out
as in a run over the whole shot (see pipeline.run).

`build_frame_estimator(request, estimator)` picks the adapter a request asks for.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from ..errors import BadInputError
from ..models.plugins import ESTIMATOR_KINDS, has_clip, is_metric
from .request import STEREO_FAR, STEREO_NEAR, EstimateRequest

STEREO_LAYOUTS = ("top-bottom", "side-by-side", "vr180")

# A photo's field of view is unknown; plug-ins get pinhole rays of this one (recorded in the sidecar).
PHOTO_FOV_DEG = 60.0


@dataclass(frozen=True)
class FramePrediction:
    """One frame's raw depth: `disparity` float32 [h, w] (relative disparity, or 1/m for
    metric estimators; [h, w] may be smaller than the frame), `valid` bool [h, w].
    `filled`: the estimator already filled the invalid pixels (the post stage keeps its fill)."""

    disparity: np.ndarray
    valid: np.ndarray
    filled: bool = False


class FrameEstimator(Protocol):
    """Maps whole RGB frames to disparity: what the pipeline drives.

    `kind`: one of models.plugins.ESTIMATOR_KINDS. `batch_size`: frames per
    `estimate` call. `estimate(frames float32 [N, H, W, 3] 0..1) -> N FramePredictions`.
    `describe()`: a JSON-ready dict for the sidecar. Optional `depth_frame(frame) -> frame`:
    the part of a frame the depth belongs to (a stereo estimator's left eye), which the
    later stages use as the picture (size, guide, preview); without it, the whole frame.
    """

    kind: str
    batch_size: int

    def estimate(self, frames: np.ndarray) -> list[FramePrediction]: ...

    def describe(self) -> dict: ...


def describe_model(estimator) -> dict:
    """Name, kind and licence of a registry network (with its device), or a plug-in's name and kind."""
    spec = getattr(estimator, "spec", None)
    if spec is None:
        return {"name": getattr(estimator, "name", type(estimator).__name__), "kind": estimator.kind, "plugin": True}
    described = {"name": spec.name, "title": spec.title, "kind": spec.kind, "license": spec.license,
                 "commercial_use": spec.commercial_use}
    from ..models import registry

    native = registry.find(spec.name)
    input_size = getattr(estimator, "input_size", spec.input_size)
    if native is not None and input_size != native.input_size:  # only when changed: older sidecars stay comparable
        described["input_size"] = input_size
    if hasattr(estimator, "device"):
        described.update(device=str(estimator.device), precision=getattr(estimator, "precision", None))
    return described


def photo_rays(height: int, width: int) -> np.ndarray:
    """Pinhole rays of a photo looking along +X (+Z up), of the assumed field of view."""
    from ..panorama.projection import View, look_at

    return View(look_at((1.0, 0.0, 0.0)), PHOTO_FOV_DEG, height, width).rays()


def check_kind(estimator) -> str:
    kind = getattr(estimator, "kind", None)
    if kind not in ESTIMATOR_KINDS:
        raise ValueError(f"estimator kind must be one of {', '.join(ESTIMATOR_KINDS)}, got {kind!r}")
    return kind


def to_prediction(result: np.ndarray, kind: str) -> FramePrediction:
    """An estimator's output for one frame as disparity: metric depth or distance is inverted."""
    result = np.asarray(result, dtype=np.float32)
    finite = np.isfinite(result)
    if is_metric(kind):
        valid = finite & (result > 0)
        disparity = np.where(valid, 1.0 / np.where(valid, result, 1.0), 0.0).astype(np.float32)
        return FramePrediction(disparity, valid)
    return FramePrediction(np.where(finite, result, 0.0).astype(np.float32), finite)


class PlainFrameEstimator:
    """A protocol estimator run on each whole frame with its rays.

    `projection`: "equirect" (equirect rays) or "perspective" (pinhole rays of a
    PHOTO_FOV_DEG view along +X). `working_height`: run the estimator on frames
    area-resized to this height (the post stage brings the result back to full size,
    edge-aware); None keeps the frame size.
    """

    def __init__(self, estimator, *, projection: Literal["equirect", "perspective"] = "equirect",
                 batch_size: int | None = None, working_height: int | None = None):
        self.kind = check_kind(estimator)
        if projection not in ("equirect", "perspective"):
            raise ValueError(f"projection must be equirect or perspective, got {projection!r}")
        self.estimator = estimator
        self.projection = projection
        self.batch_size = int(batch_size or getattr(estimator, "batch_size", 4))
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        self.working_height = working_height

    def _rays(self, height: int, width: int) -> np.ndarray:
        if self.projection == "equirect":
            from ..panorama.equirect import ray_directions

            return ray_directions(height, width)
        return photo_rays(height, width)

    def estimate(self, frames: np.ndarray) -> list[FramePrediction]:
        """Predictions of frames [N, H, W, 3], at the working size."""
        import cv2

        from ..models.plugins import check_prediction

        frames = np.asarray(frames, dtype=np.float32)
        height, width = frames.shape[1:3]
        if self.working_height and self.working_height < height:
            h = int(self.working_height)
            w = max(2, round(width * h / height))
            frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
            height, width = h, w
        rays = np.broadcast_to(self._rays(height, width), frames.shape)
        name = describe_model(self.estimator)["name"]
        result = check_prediction(self.estimator.predict(frames, np.ascontiguousarray(rays)), frames, name)
        return [to_prediction(r, self.kind) for r in result]

    def describe(self) -> dict:
        """Model and adapter settings for the sidecar."""
        described = {**describe_model(self.estimator), "adapter": "whole frame", "projection": self.projection,
                     "working_height": self.working_height, "batch_size": self.batch_size}
        if self.projection == "perspective":
            described["rays"] = f"pinhole, {PHOTO_FOV_DEG:g} degrees horizontal field of view, looking along +X"
        return described


class FusionFrameEstimator:
    """360 frames through panorama.fusion (views, alignment, blending), one frame a call.

    The fused disparity (relative: aligned across views, up to one scale and shift per
    frame; metric: 1/m along the rays, planar metric depth included) and its mask are
    handed on; near/far calibration happens in the post stage, after stabilisation.
    """

    batch_size = 1

    def __init__(self, estimator, views="cube", **fusion_options):
        kind = check_kind(estimator)
        self.kind = "metric-distance" if is_metric(kind) else kind  # fusion returns distance along the rays
        self.estimator = estimator
        self.views = views
        self.fusion_options = fusion_options
        self.last_timings: dict[str, float] = {}

    def estimate(self, frames: np.ndarray) -> list[FramePrediction]:
        """Fused predictions of equirect frames [N, H, W, 3]; BadInputError for a frame that is not 360."""
        from ..panorama.fusion import estimate_equirect

        results = []
        for frame in frames:
            try:
                fused = estimate_equirect(frame, self.estimator, self.views, calibrate=False, **self.fusion_options)
            except ValueError as error:  # the panorama's input checks: not a usable 360 frame
                if isinstance(error, BadInputError):
                    raise
                raise BadInputError(str(error)) from None
            self.last_timings = fused.timings
            results.append(FramePrediction(fused.disparity.astype(np.float32), fused.mask.copy()))
        return results

    def describe(self) -> dict:
        """Model and fusion settings for the sidecar."""
        views = self.views if isinstance(self.views, str) else f"{len(self.views)} views"
        options = {k: v for k, v in self.fusion_options.items() if isinstance(v, int | float | str | bool)}
        return {**describe_model(self.estimator), "adapter": "equirect fusion", "views": views, **options}


class StereoFrames:
    """What the stereo adapters share: the left eye is the depth's picture, and `estimate` runs
    `_estimate_one` a frame at a time, a frame that is no usable pair a BadInputError and the
    warnings handed to `warn`. A subclass sets `layout`, `warn` and `_estimate_one`."""

    layout: str
    warn: Callable[[str], None] | None
    prefix_bad_input = True  # a BadInputError of the frame's own checks is prefixed as well

    def depth_frame(self, frame: np.ndarray) -> np.ndarray:
        """The left eye of a stereo frame."""
        from ..stereo import split_stereo

        return split_stereo(frame, self.layout)[0]

    def eye_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of one eye of a frame of this size; BadInputError if it does not split."""
        return stereo_eye_size(self.layout, width, height)

    def _estimate_one(self, frame: np.ndarray) -> FramePrediction:
        raise NotImplementedError

    def estimate(self, frames: np.ndarray) -> list[FramePrediction]:
        """Left-eye predictions of stereo frames [N, H, W, 3]; BadInputError for a frame that is no usable pair."""
        results = []
        for frame in frames:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    results.append(self._estimate_one(frame))
                except ValueError as error:  # split_stereo / check_stereo_pair: not a usable pair
                    if isinstance(error, BadInputError) and not self.prefix_bad_input:
                        raise
                    raise BadInputError(f"stereo {self.layout} frame: {error}") from None
            pass_on_warnings(caught, self.warn)
        return results


class StereoFrameEstimator(StereoFrames):
    """Stereo frames (both eyes in one picture) through the stereo matcher, one frame a call.

    `layout`: "top-bottom" (left eye on top), "side-by-side" (left eye on the left) or "vr180"
    (two square half-equirect eyes side by side, stereo.estimate_stereo_vr180).
    `projection` "equirect": omni-directional stereo (stereo.estimate_stereo_equirect with
    `ipd`, `pole_merge` and the search range `min_distance`..`max_distance`) or VR180; the
    kind is metric-distance and the disparity handed on is 1/m. `projection` "perspective": a
    rectified pair; the disparity is in pixels, which is inverse depth times focal length
    and baseline, so the kind is relative-disparity. The depth belongs to the left eye
    (`depth_frame`). The eye order is checked on the first frame only; `warn(message)`
    receives each warning (default: warnings.warn). `edges`: the 360 (ODS) and VR180 eyes' depth
    jumps re-matched and cut at the plate's colour edges (stereo.matching.snap_match_edges); `segment`: then
    settled by a colour segmentation of the plate (stereo.segmented_edges; --edges snap).
    """

    batch_size = 1

    def __init__(self, layout: str, *, projection: Literal["equirect", "perspective"] = "equirect",
                 ipd: float = 0.064, pole_merge: tuple[float, float] | None = (60.0, 75.0),
                 min_distance: float = STEREO_NEAR, max_distance: float = STEREO_FAR,
                 warn: Callable[[str], None] | None = None, edges: bool = True, segment: bool = False):
        if layout not in STEREO_LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(STEREO_LAYOUTS)}, got {layout!r}")
        if projection not in ("equirect", "perspective") or (layout == "vr180" and projection != "equirect"):
            raise ValueError(f"projection must be equirect (or perspective, not for vr180), got {projection!r}")
        self.layout = layout
        self.projection = projection
        self.kind = "metric-distance" if projection == "equirect" else "relative-disparity"
        self.ipd = float(ipd)
        self.pole_merge = pole_merge
        self.min_distance, self.max_distance = float(min_distance), float(max_distance)
        self.warn = warn
        self.edges, self.segment = bool(edges), bool(edges) and bool(segment)
        self._checked_eye_order = False

    def _estimate_one(self, frame: np.ndarray) -> FramePrediction:
        from ..stereo import (
            estimate_stereo_equirect,
            estimate_stereo_perspective,
            estimate_stereo_vr180,
            split_stereo,
        )

        if self.projection == "equirect":
            check_stereo_frame(self.layout, frame.shape[1], frame.shape[0])
        left, right = split_stereo(frame, self.layout)
        check = not self._checked_eye_order
        if self.layout == "vr180":
            depth = estimate_stereo_vr180(left, right, ipd=self.ipd, min_distance=self.min_distance,
                                          max_distance=self.max_distance, check_eye_order=check, edges=self.edges,
                                          segment=self.segment)
            inverse = np.where(depth.mask, 1.0 / depth.distance, 0.0).astype(np.float32)
            prediction = FramePrediction(inverse, depth.mask.copy())
        elif self.projection == "equirect":
            depth = estimate_stereo_equirect(left, right, ipd=self.ipd, pole_merge=self.pole_merge,
                                             min_distance=self.min_distance, max_distance=self.max_distance,
                                             check_eye_order=check, edges=self.edges, segment=self.segment)
            inverse = np.where(depth.mask, 1.0 / depth.distance, 0.0).astype(np.float32)
            prediction = FramePrediction(inverse, depth.mask.copy())
        else:
            disparity, mask = estimate_stereo_perspective(left, right, check_eye_order=check)
            prediction = FramePrediction(disparity.astype(np.float32), mask & (disparity > 0), filled=True)
        self._checked_eye_order = True
        return prediction

    def describe(self) -> dict:
        """Matcher settings for the sidecar."""
        from ..models import registry

        spec = registry.get("stereo")
        described = {"name": spec.name, "title": spec.title, "kind": self.kind, "license": spec.license,
                     "commercial_use": spec.commercial_use, "adapter": "stereo matching", "layout": self.layout,
                     "projection": self.projection, "eye": "left"}
        if self.projection == "equirect":  # what the ODS and VR180 eyes' edge step did (--edges)
            described["edges"] = ("none" if not self.edges else "re-matched and cut, then segmented" if self.segment
                                  else "re-matched and cut")
        if self.layout == "vr180":
            described.update(vr180_description(self.ipd, self.min_distance, self.max_distance))
        elif self.projection == "equirect":
            described.update(geometry="omni-directional stereo (ODS), parallel eyes", ipd=self.ipd,
                             pole_merge=list(self.pole_merge) if self.pole_merge else None,
                             min_distance=self.min_distance, max_distance=self.max_distance,
                             distance="metres from the camera centre along each ray; off the mask, max_distance",
                             disparity="1 / distance (1/m); 0 off the mask")
        else:
            described["disparity"] = ("pixels of the left eye (column left - column right); off the mask, "
                                      "the disparity of the background neighbours")
        return described


def pass_on_warnings(caught, warn: Callable[[str], None] | None) -> None:
    for warning in caught:
        if warn is not None:
            warn(str(warning.message))
        else:
            warnings.warn(warning.message, stacklevel=3)


def stereo_eye_size(layout: str, width: int, height: int) -> tuple[int, int]:
    """(width, height) of one eye of a `layout` frame of this size; BadInputError if it does not split."""
    from ..stereo import split_stereo

    try:
        eye = split_stereo(np.broadcast_to(np.uint8(0), (height, width)), layout)[0]
    except ValueError as error:
        raise BadInputError(str(error)) from None
    return eye.shape[1], eye.shape[0]


def check_stereo_frame(layout: str, width: int, height: int) -> None:
    """BadInputError unless a `layout` frame of this size splits into two eyes of its shape (360:
    2:1 each; vr180: square each); a frame whose eyes have another layout's shape is told which."""
    from ..stereo import check_vr180_eye

    eye_width, eye_height = stereo_eye_size(layout, width, height)
    if layout == "vr180":
        try:
            check_vr180_eye(eye_width, eye_height)
        except ValueError as error:
            raise BadInputError(str(error)) from None
        return
    if eye_width == 2 * eye_height:
        return
    message = f"360 footage must be twice as wide as high, each eye is {eye_width}x{eye_height}"
    if width == 2 * height:
        message += "; the frame (two square eyes side by side) looks like VR180 180-degree stereo: give --layout vr180"
    elif width == 4 * height and layout == "top-bottom":
        message += "; the frame (two 2:1 eyes side by side) looks like --layout side-by-side"
    elif width == height and layout == "side-by-side":
        message += "; the frame (two 2:1 eyes one above the other) looks like --layout top-bottom"
    else:
        message += " (use --projection perspective for ordinary footage)"
    raise BadInputError(message)


def vr180_description(ipd: float, min_distance: float, max_distance: float) -> dict:
    return dict(geometry="VR180: two parallel half-equirect eyes (180 x 180 degrees), the left eye at +Y ipd/2",
                ipd=ipd, min_distance=min_distance, max_distance=max_distance,
                distance="metres from the left eye's centre along each ray; off the mask, max_distance",
                disparity="1 / distance (1/m); 0 off the mask")


class ClipFrameEstimator:
    """A clip estimator on an ordinary (perspective) video: `infer_video_depth`'s windows, keyframes,
    alignment and blend (video.clip_windows.OfficialVideoDepth), streamed.

    The frames' rays are pinhole rays of a PHOTO_FOV_DEG view along +X. A relative estimator's
    windows are aligned by the official least squares; a metric one's are only blended.
    `alignments`: the (scale, shift) of each later window of the last segment.
    """

    streaming = True
    batch_size = 1

    def __init__(self, estimator):
        self.kind = check_kind(estimator)
        if not has_clip(estimator):
            raise ValueError("ClipFrameEstimator needs an estimator with predict_clip")
        self.estimator = estimator
        self._stream = None

    def reset(self) -> None:
        """Forget the frames seen: the next push starts a new shot."""
        self._stream = None

    @property
    def alignments(self) -> list[tuple[float, float]]:
        return [] if self._stream is None else list(self._stream.alignments)

    def reach(self, number: int) -> tuple[int, int]:
        """(first, last) 1-based frames frame `number` depends on (video.clip_windows.reach)."""
        from ..video.clip_windows import reach

        first, last = reach(number - 1, "official")
        return first + 1, last + 1

    def push(self, number: int, frame: np.ndarray) -> list[tuple[int, FramePrediction]]:
        """Frame `number` (1-based) in; the predictions that became final out, in order."""
        from ..video.clip_windows import OfficialVideoDepth

        frame = np.asarray(frame, dtype=np.float32)
        if self._stream is None:
            self._stream = OfficialVideoDepth(self.estimator.predict_clip, photo_rays(*frame.shape[:2]),
                                              metric=is_metric(self.kind), source=describe_model(self.estimator)["name"])
        return self._predictions(self._stream.push(number - 1, frame))

    def finish(self) -> list[tuple[int, FramePrediction]]:
        """The end of the frames: every prediction still held."""
        return [] if self._stream is None else self._predictions(self._stream.finish())

    def _predictions(self, results) -> list[tuple[int, FramePrediction]]:
        return [(index + 1, to_prediction(depth, self.kind)) for index, depth in results]

    def estimate(self, frames: np.ndarray) -> list[FramePrediction]:
        """Frames [N, H, W, 3] as one whole clip (frames 1..N of a fresh stream)."""
        self.reset()
        results = [r for number, frame in enumerate(frames, start=1) for r in self.push(number, frame)]
        return [prediction for _, prediction in results + self.finish()]

    def describe(self) -> dict:
        """Model and adapter settings for the sidecar."""
        return {**describe_model(self.estimator), "adapter": "video windows", "projection": "perspective",
                "windows": "32 frames every 22, keyframes, least-squares alignment, 8-frame blend (official)",
                "rays": f"pinhole, {PHOTO_FOV_DEG:g} degrees horizontal field of view, looking along +X"}


class ViewStreamFrameEstimator:
    """A clip estimator on 360 video: each view of the layout a stream through the windows,
    aligned once per window, fused per frame (video.view_streams.ViewStreamFusion), streamed.

    The fused disparity is along the rays (metric kinds: 1/m, planar metric depth included), as
    FusionFrameEstimator gives it; calibration happens in the post stage.
    """

    streaming = True
    batch_size = 1

    def __init__(self, estimator, views="cube", **fusion_options):
        kind = check_kind(estimator)
        if not has_clip(estimator):
            raise ValueError("ViewStreamFrameEstimator needs an estimator with predict_clip")
        self.kind = "metric-distance" if is_metric(kind) else kind
        self.estimator = estimator
        self.views = views
        self.fusion_options = fusion_options
        self.fusion = None

    def reset(self) -> None:
        """Forget the frames seen: the next push starts a new shot."""
        self.fusion = None

    @property
    def last_timings(self) -> dict[str, float]:
        """Seconds per stage of the view streams (project, predict, align, merge) since the last look."""
        return {} if self.fusion is None else self.fusion.take_timings()

    def reach(self, number: int) -> tuple[int, int]:
        """(first, last) 1-based frames frame `number` depends on (local window anchors)."""
        from ..video.clip_windows import reach

        first, last = reach(number - 1, "local")
        return first + 1, last + 1

    def push(self, number: int, frame: np.ndarray) -> list[tuple[int, FramePrediction]]:
        """Equirect frame `number` (1-based) in; the fused predictions that became final out."""
        from ..video.view_streams import ViewStreamFusion

        if self.fusion is None:
            self.fusion = ViewStreamFusion(self.estimator, self.views, **self.fusion_options)
        try:
            return self._predictions(self.fusion.push(number - 1, frame))
        except ValueError as error:  # the panorama's input checks: not a usable 360 frame
            if isinstance(error, BadInputError):
                raise
            raise BadInputError(str(error)) from None

    def finish(self) -> list[tuple[int, FramePrediction]]:
        """The end of the frames: every fused prediction still held."""
        return [] if self.fusion is None else self._predictions(self.fusion.finish())

    @staticmethod
    def _predictions(results) -> list[tuple[int, FramePrediction]]:
        return [(index + 1, FramePrediction(disparity.astype(np.float32), seen.copy()))
                for index, (disparity, seen) in results]

    def estimate(self, frames: np.ndarray) -> list[FramePrediction]:
        """Equirect frames [N, H, W, 3] as one whole clip (frames 1..N of a fresh stream)."""
        self.reset()
        results = [r for number, frame in enumerate(frames, start=1) for r in self.push(number, frame)]
        return [prediction for _, prediction in results + self.finish()]

    def describe(self) -> dict:
        """Model and view-stream settings for the sidecar."""
        views = self.views if isinstance(self.views, str) else f"{len(self.views)} views"
        options = {k: v for k, v in self.fusion_options.items() if isinstance(v, int | float | str | bool)}
        return {**describe_model(self.estimator), "adapter": "equirect view streams", "views": views,
                "windows": "32 frames every 22, keyframes 20 and 10 frames back, one scale and shift per view "
                           "per window, windows chained by scale, 8-frame blend", **options}


def build_frame_estimator(request: EstimateRequest, estimator, warn: Callable[[str], None] | None = None):
    """The adapter `request` asks for, around `estimator` (None for the stereo matcher)."""
    if request.guided:
        from .guided_estimator import StereoGuidedFrameEstimator

        near = request.near if request.near is not None else STEREO_NEAR
        far = request.far if request.far is not None else STEREO_FAR
        return StereoGuidedFrameEstimator(estimator, request.layout, views=request.views or "cube", ipd=request.ipd,
                                          pole_merge=request.pole_merge, min_distance=near, max_distance=far,
                                          warn=warn)
    if request.stereo:
        near = request.near if request.near is not None else STEREO_NEAR
        far = request.far if request.far is not None else STEREO_FAR
        return StereoFrameEstimator(request.layout, projection=request.projection, ipd=request.ipd,
                                    pole_merge=request.pole_merge, min_distance=near, max_distance=far, warn=warn,
                                    edges=request.edges != "none", segment=request.edges == "snap")
    if has_clip(estimator):
        if request.projection == "perspective":
            return ClipFrameEstimator(estimator)
        return ViewStreamFrameEstimator(estimator, request.views or "cube")
    if request.projection == "perspective":
        return PlainFrameEstimator(estimator, projection="perspective")
    if runs_on_torch_device(estimator):  # a network: the whole trip on its device (pipeline.device_frames)
        from .device_frames import DeviceFusionFrameEstimator

        return DeviceFusionFrameEstimator(estimator, request.views or "cube")
    return FusionFrameEstimator(estimator, request.views or "cube")


def runs_on_torch_device(estimator) -> bool:
    """True for an estimator whose network runs on a torch device and takes device tensors.
    Torch is imported only for an estimator that could be one: a numpy plug-in's run never loads it."""
    device = getattr(estimator, "device", None)
    if device is None or not callable(getattr(estimator, "predict_tensor", None)):
        return False
    import torch

    return isinstance(device, torch.device)
