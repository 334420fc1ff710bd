"""Whole videos and image sequences: decode, estimate, post-process, stabilise and write, concurrently.

`run_sequence(source, out_dir, frame_estimator, ...)` is what the CLI (`depth360 estimate
clip.mp4 -o OUT`) and Blender call. Four stages run in their own threads, joined by
bounded queues (memory stays flat however long the shot): decoding (video_io), the
estimator (batches of `frame_estimator.batch_size` frames; it never waits on file I/O
as long as decoding keeps ahead), post-processing plus temporal stabilisation (one
thread, frames in order), and writing. The first error in any stage stops all of them
(nothing hangs), and is raised from `run_sequence`; every file is written to a
temporary name and renamed, so a file is complete or absent.

Outputs, in `OUT_DIR/<name>/` (`clip.mp4`, `clip/` and `clip_%05d.png` all give `clip`),
frame numbers 1-based, five digits (more past 99999):

- `distance_00001.exr`: float32 metres along each pixel's ray, one channel "Y"
  (image_io.write_exr); invalid pixels hold `far`.
- `disparity_00001.exr`: with stabilisation, the stabilised inverse distance 1/m
  (shot units, see temporal.py); without it, the estimator's own output resampled to
  the frame (relative: up to scale and shift; metric: 1/m). Invalid pixels hold 0.
- `mask_00001.exr`: 1 valid, 0 invalid (sky beyond infinity, unseen, or far field).
- `distance_00001.png` / `disparity_00001.png` (`png16`): 16-bit grey, distance linear
  over [near, far]; disparity over [0, 1/near] (stabilised or metric) or the frame's own
  min..max (unstabilised relative). The sidecar records the rule.
- `preview_00001.png` and, at the end of the run, `preview.mp4` (H.264): colour on the
  left, inferno-mapped inverse distance on the right (near is bright).
- `rgbd_00001.png` (`rgbd`): the over-under RGBD image read by VR players and
  compositing tools: the same width as the frame, twice its height; the top half is
  the colour frame (8-bit sRGB), the bottom half the depth as 8-bit grey, white near and
  black far: level = 255 (1/d - 1/far) / (1/near - 1/far), invalid pixels black.
- `<name>.json`: the sidecar: source, model, options, frame range, counts, version,
  timings. A run with `--frames A-B` names it `<name>_0000A-0000B.json` and its video
  `preview_0000A-0000B.mp4`, so chunks run side by side do not collide.

Resume: a frame is complete when every per-frame file of the requested kinds exists;
a rerun skips complete frames, recomputing only the context frames the stabiliser needs
(temporal.py: frame t depends on frames t - context .. t only), so a killed run,
resumed, equals an uninterrupted one. Stale temporary files of the run's frames are
removed first. A resumed run must use the same options (recorded in the sidecar).
"""

from __future__ import annotations

import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TextIO

import numpy as np

from . import image_io, postprocess, video_io
from .errors import BadInputError, Depth360Error
from .progress import Progress, ProgressMode
from .temporal import StabiliserSettings, TemporalStabiliser
from .version import __version__

SAVE_KINDS = ("distance", "disparity", "mask", "preview", "png16", "rgbd")
DEFAULT_SAVE = ("distance", "mask", "preview")
ESTIMATOR_KINDS = ("relative-disparity", "metric-distance")
# Near/far defaults (metres): relative models as fusion.py; metric ones are only clamped.
RELATIVE_NEAR, RELATIVE_FAR = 1.0, 100.0
METRIC_NEAR, METRIC_FAR = 0.01, 1000.0
# Colour range of previews and RGBD depth for a metric model without user near/far.
METRIC_DISPLAY_NEAR, METRIC_DISPLAY_FAR = 1.0, 100.0
PREVIEW_MAX_WIDTH = 3840
QUEUE_FRAMES = 4  # decoded frames buffered ahead of the estimator, beyond one batch
PHOTO_FOV_DEG = 60.0
Upsampling = Literal["edge-aware", "bilinear"]
SkyMode = Literal["keep", "mask"]


# --- frame estimators ------------------------------------------------------------------------


@dataclass(frozen=True)
class FramePrediction:
    """One frame's raw depth: `disparity` float32 [h, w] (relative disparity, or 1/m for
    metric estimators; [h, w] may be smaller than the frame), `valid` bool [h, w]."""

    disparity: np.ndarray
    valid: np.ndarray


class FrameEstimator(Protocol):
    """Maps whole RGB frames to disparity: what `run_sequence` drives.

    `kind`: "relative-disparity" or "metric-distance". `batch_size`: frames per
    `estimate` call. `estimate(frames float32 [N, H, W, 3] 0..1) -> N FramePredictions`.
    `describe()`: a JSON-ready dict for the sidecar. Optional `depth_frame(frame) -> frame`:
    the part of a frame the depth belongs to (a stereo estimator's left eye), which the
    later stages use as the picture (size, guide, preview); without it, the whole frame.
    """

    kind: str
    batch_size: int

    def estimate(self, frames: np.ndarray) -> list[FramePrediction]: ...

    def describe(self) -> dict: ...


def _describe_estimator(estimator) -> dict:
    spec = getattr(estimator, "spec", None)
    if spec is not None:
        return {"name": spec.name, "kind": spec.kind, "license": spec.license}
    return {"name": getattr(estimator, "name", type(estimator).__name__), "kind": estimator.kind}


def _to_prediction(result: np.ndarray, kind: str) -> FramePrediction:
    result = np.asarray(result, dtype=np.float32)
    finite = np.isfinite(result)
    if kind == "metric-distance":
        valid = finite & (result > 0)
        disparity = np.where(valid, 1.0 / np.where(valid, result, 1.0), 0.0).astype(np.float32)
        return FramePrediction(disparity, valid)
    return FramePrediction(np.where(finite, result, 0.0).astype(np.float32), finite)


class PlainFrameEstimator:
    """A protocol estimator (DESIGN.md) run on each whole frame with its rays.

    `projection`: "equirect" (equirect rays) or "perspective" (pinhole rays of a
    PHOTO_FOV_DEG view along +X, as the CLI gives photos). `working_height`: run the
    estimator on frames area-resized to this height (the post stage brings the result
    back to full size, edge-aware); None keeps the frame size.
    """

    def __init__(self, estimator, *, projection: Literal["equirect", "perspective"] = "equirect",
                 batch_size: int | None = None, working_height: int | None = None):
        if getattr(estimator, "kind", None) not in ESTIMATOR_KINDS:
            raise ValueError(f"estimator kind must be one of {', '.join(ESTIMATOR_KINDS)}")
        if projection not in ("equirect", "perspective"):
            raise ValueError(f"projection must be equirect or perspective, got {projection!r}")
        self.estimator = estimator
        self.kind = estimator.kind
        self.projection = projection
        self.batch_size = int(batch_size or getattr(estimator, "batch_size", 4))
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        self.working_height = working_height

    def _rays(self, height: int, width: int) -> np.ndarray:
        if self.projection == "equirect":
            from .equirect import ray_directions

            return ray_directions(height, width)
        from .projection import View, look_at

        return View(look_at((1.0, 0.0, 0.0)), PHOTO_FOV_DEG, height, width).rays()

    def estimate(self, frames: np.ndarray) -> list[FramePrediction]:
        """Predictions of frames [N, H, W, 3], at the working size."""
        import cv2

        from .plugins import check_prediction

        frames = np.asarray(frames, dtype=np.float32)
        height, width = frames.shape[1:3]
        if self.working_height and self.working_height < height:
            h = int(self.working_height)
            w = max(2, round(width * h / height))
            frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
            height, width = h, w
        rays = np.broadcast_to(self._rays(height, width), frames.shape)
        name = _describe_estimator(self.estimator)["name"]
        result = check_prediction(self.estimator.predict(frames, np.ascontiguousarray(rays)), frames, name)
        return [_to_prediction(r, self.kind) for r in result]

    def describe(self) -> dict:
        """Model and adapter settings for the sidecar."""
        return {**_describe_estimator(self.estimator), "adapter": "whole frame",
                "projection": self.projection, "working_height": self.working_height,
                "batch_size": self.batch_size}


class FusionFrameEstimator:
    """360 frames through fusion.estimate_equirect (views, alignment, blending), one frame a call.

    The fused disparity (relative: aligned across views, up to one scale and shift per
    frame; metric: 1/m) and its mask are handed on; near/far calibration happens after
    stabilisation, in the pipeline.
    """

    batch_size = 1

    def __init__(self, estimator, views="cube", **fusion_options):
        if getattr(estimator, "kind", None) not in ESTIMATOR_KINDS:
            raise ValueError(f"estimator kind must be one of {', '.join(ESTIMATOR_KINDS)}")
        self.estimator = estimator
        self.kind = estimator.kind
        self.views = views
        self.fusion_options = fusion_options

    def estimate(self, frames: np.ndarray) -> list[FramePrediction]:
        """Fused predictions of equirect frames [N, H, W, 3]."""
        from .fusion import estimate_equirect

        results = []
        for frame in frames:
            fused = estimate_equirect(frame, self.estimator, self.views, **self.fusion_options)
            results.append(FramePrediction(fused.disparity.astype(np.float32), fused.mask.copy()))
        return results

    def describe(self) -> dict:
        """Model and fusion settings for the sidecar."""
        views = self.views if isinstance(self.views, str) else f"{len(self.views)} views"
        options = {k: v for k, v in self.fusion_options.items() if isinstance(v, int | float | str | bool)}
        return {**_describe_estimator(self.estimator), "adapter": "equirect fusion", "views": views, **options}


class StereoFrameEstimator:
    """Stereo frames (both eyes in one picture) through the stereo matcher, one frame a call.

    `layout`: "top-bottom" (left eye on top) or "side-by-side" (left eye on the left).
    `projection` "equirect": omni-directional stereo (stereo.estimate_stereo_equirect with
    `ipd`, `pole_merge` and the search range `min_distance`..`max_distance`); the kind is
    metric-distance and the disparity handed on is 1/m, so the pipeline only filters it in
    time. `projection` "perspective": a rectified pair; the disparity is in pixels, which is
    inverse depth times focal length and baseline, so the kind is relative-disparity. The
    depth belongs to the left eye (`depth_frame`). The eye order is checked on the first
    frame only; `warn(message)` receives the warning (default: warnings.warn).
    """

    batch_size = 1

    def __init__(self, layout: str, *, projection: Literal["equirect", "perspective"] = "equirect",
                 ipd: float = 0.064, pole_merge: tuple[float, float] | None = (60.0, 75.0),
                 min_distance: float = 0.5, max_distance: float = 100.0,
                 warn: Callable[[str], None] | None = None):
        if layout not in ("top-bottom", "side-by-side"):
            raise ValueError(f"layout must be 'top-bottom' or 'side-by-side', got {layout!r}")
        if projection not in ("equirect", "perspective"):
            raise ValueError(f"projection must be equirect or perspective, got {projection!r}")
        self.layout = layout
        self.projection = projection
        self.kind = "metric-distance" if projection == "equirect" else "relative-disparity"
        self.ipd = float(ipd)
        self.pole_merge = pole_merge
        self.min_distance, self.max_distance = float(min_distance), float(max_distance)
        self._warn = warn
        self._checked_eye_order = False

    def depth_frame(self, frame: np.ndarray) -> np.ndarray:
        """The left eye of a stereo frame."""
        from .stereo import split_stereo

        return split_stereo(frame, self.layout)[0]

    def _estimate_one(self, frame: np.ndarray) -> FramePrediction:
        from .stereo import estimate_stereo_equirect, estimate_stereo_perspective, split_stereo

        left, right = split_stereo(frame, self.layout)
        check = not self._checked_eye_order
        if self.projection == "equirect":
            depth = estimate_stereo_equirect(left, right, ipd=self.ipd, pole_merge=self.pole_merge,
                                             min_distance=self.min_distance, max_distance=self.max_distance,
                                             check_eye_order=check)
            inverse = np.where(depth.mask, 1.0 / depth.distance, 0.0).astype(np.float32)
            prediction = FramePrediction(inverse, depth.mask.copy())
        else:
            disparity, mask = estimate_stereo_perspective(left, right, check_eye_order=check)
            prediction = FramePrediction(disparity.astype(np.float32), mask & (disparity > 0))
        self._checked_eye_order = True
        return prediction

    def estimate(self, frames: np.ndarray) -> list[FramePrediction]:
        """Left-eye predictions of stereo frames [N, H, W, 3]; BadInputError for a frame that is no stereo pair."""
        import warnings

        results = []
        for frame in frames:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    results.append(self._estimate_one(frame))
                except ValueError as error:  # split_stereo / check_stereo_pair: not a usable pair
                    raise BadInputError(f"stereo {self.layout} frame: {error}") from None
            for warning in caught:
                if self._warn is not None:
                    self._warn(str(warning.message))
                else:
                    warnings.warn(warning.message, stacklevel=2)
        return results

    def describe(self) -> dict:
        """Matcher settings for the sidecar."""
        described = {"name": "stereo", "kind": self.kind, "adapter": "stereo matching", "layout": self.layout,
                     "projection": self.projection, "eye": "left"}
        if self.projection == "equirect":
            described.update(ipd=self.ipd, pole_merge=list(self.pole_merge) if self.pole_merge else None,
                             min_distance=self.min_distance, max_distance=self.max_distance)
        return described


# --- files ------------------------------------------------------------------------------------


def frame_tag(number: int) -> str:
    """The number as written in file names: five digits, more past 99999."""
    return f"{number:05d}"


def frame_files(save: Iterable[str], number: int) -> list[str]:
    """Names of the per-frame files that `save` asks for, for frame `number`."""
    save = set(save)
    tag = frame_tag(number)
    names = []
    for kind in ("distance", "disparity"):
        if kind in save:
            names.append(f"{kind}_{tag}.exr")
            if "png16" in save:
                names.append(f"{kind}_{tag}.png")
    for kind, suffix in (("mask", "exr"), ("preview", "png"), ("rgbd", "png")):
        if kind in save:
            names.append(f"{kind}_{tag}.{suffix}")
    return names


def frame_is_complete(folder: Path, save: Iterable[str], number: int) -> bool:
    """True when every per-frame file of `save` exists for frame `number`."""
    return all((folder / name).is_file() for name in frame_files(save, number))


_TEMPORARY = re.compile(r"^\.(?:distance|disparity|mask|preview|rgbd)_(\d+)\.(?:exr|png)\..*\.tmp$")


def _remove_stale_temporaries(folder: Path, first: int, last: int | None, run_files: list[str]) -> int:
    """Delete temporary files a killed run left for frames first..last (and this run's own files)."""
    removed = 0
    for entry in os.scandir(folder):
        match = _TEMPORARY.match(entry.name)
        mine = match and int(match.group(1)) >= first and (last is None or int(match.group(1)) <= last)
        mine = mine or any(entry.name.startswith(f".{name}.") and entry.name.endswith(".tmp") for name in run_files)
        if mine:
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".depth360-write-test-", suffix=".tmp")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise Depth360Error(
            f"cannot write to output folder {folder}: {error.strerror or error}"
        ) from None


def _normalise_save(save: Iterable[str]) -> tuple[str, ...]:
    save = tuple(dict.fromkeys(save))
    unknown = [k for k in save if k not in SAVE_KINDS]
    if unknown or not save:
        raise BadInputError(f"unknown save kind(s) {', '.join(unknown) or '(none)'}; choose from {','.join(SAVE_KINDS)}")
    if "png16" in save and not {"distance", "disparity"} & set(save):
        raise BadInputError("--save png16 writes distance or disparity as 16-bit PNG: save one of them too")
    return save


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceResult:
    """What a run did. `written`: frames written now; `skipped`: frames already complete;
    `context`: frames estimated only to give the stabiliser its history."""

    folder: Path
    name: str
    first: int
    last: int
    written: tuple[int, ...]
    skipped: tuple[int, ...]
    context: tuple[int, ...]
    sidecar: Path
    preview_video: Path | None
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def fps(self) -> float:
        """Frames written per second of wall time."""
        wall = self.timings.get("wall", 0.0)
        return len(self.written) / wall if wall > 0 else 0.0


# --- the pipeline -------------------------------------------------------------------------------


class _Stopped(Exception):
    """Raised inside a stage when another stage failed."""


_END = object()


class _Stages:
    """Threads joined by bounded queues; the first error stops them all."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.busy: dict[str, float] = {}
        self._lock = threading.Lock()

    def put(self, q: queue.Queue, item) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def get(self, q: queue.Queue):
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue

    def add_busy(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.busy[stage] = self.busy.get(stage, 0.0) + seconds

    def start(self, name: str, function: Callable[[], None]) -> None:
        def body():
            try:
                function()
            except _Stopped:
                pass
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                with self._lock:
                    self.errors.append(error)
                self.stop.set()

        thread = threading.Thread(target=body, name=f"depth360-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        try:
            for thread in self.threads:
                while thread.is_alive():
                    thread.join(timeout=0.1)
        except BaseException:
            self.stop.set()
            for thread in self.threads:
                thread.join()
            raise
        if self.errors:
            raise self.errors[0]


@dataclass
class _FrameItem:
    number: int
    rgb: np.ndarray
    write: bool
    prediction: FramePrediction | None = None


@dataclass
class _FrameOutputs:
    number: int
    exr: dict[str, np.ndarray]
    png16: dict[str, tuple[np.ndarray, float | None, float | None]]
    rgb_images: dict[str, np.ndarray]  # name -> uint8 RGB


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def _encode_rgb_png(path: Path, rgb: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise OSError(f"cannot encode PNG {path}")
    return encoded.tobytes()


def _inferno(level: np.ndarray, valid: np.ndarray) -> np.ndarray:
    import cv2

    bgr = cv2.applyColorMap(np.round(np.clip(level, 0.0, 1.0) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    bgr[~valid] = 0
    return bgr[..., ::-1]


def _fit_width(image: np.ndarray, max_width: int) -> np.ndarray:
    import cv2

    height, width = image.shape[:2]
    if width <= max_width:
        return image
    scale = max_width / width
    return cv2.resize(image, (max_width, max(2, round(height * scale))), interpolation=cv2.INTER_AREA)


class _PreviewVideo:
    """The run's preview MP4, encoded as frames arrive, renamed into place at the end."""

    def __init__(self, path: Path, fps: float):
        self.path = path
        self.fps = fps
        self._atomic = None
        self._temporary: Path | None = None
        self._container = None
        self._stream = None
        self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        import av

        height, width = rgb.shape[:2]
        if self._container is None:
            self._atomic = image_io.atomic_path(self.path)
            self._temporary = self._atomic.__enter__()
            self._container = av.open(str(self._temporary), "w", format="mp4")
            from fractions import Fraction

            rate = Fraction(self.fps).limit_denominator(1001) if self.fps else Fraction(24)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "20", "preset": "veryfast"}
            self._stream.codec_context.thread_count = 1
        rgb = np.pad(rgb, ((0, self._stream.height - height), (0, self._stream.width - width), (0, 0)), mode="edge")
        frame = __import__("av").VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self, success: bool) -> Path | None:
        if self._container is None:
            return None
        try:
            if success:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            error = None if success else RuntimeError("pipeline failed")
            if error is None:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(type(error), error, None)
        return self.path if success else None


@dataclass(frozen=True)
class _Settings:
    kind: str
    near: float
    far: float
    display_near: float
    display_far: float
    save: tuple[str, ...]
    stabilise: bool
    upsampling: Upsampling
    refine: bool
    smoothing: postprocess.Smoothing
    sky: SkyMode
    wrap: bool


def _postprocess(item: _FrameItem, settings: _Settings, stabiliser: TemporalStabiliser | None) -> _FrameOutputs | None:
    """Fill, resample, smooth, stabilise and calibrate one frame; the arrays to write (None for context)."""
    from .calibration import relative_to_distance

    prediction = item.prediction
    rgb = item.rgb
    height, width = rgb.shape[:2]
    valid = np.asarray(prediction.valid, bool) & np.isfinite(prediction.disparity)
    disparity = prediction.disparity
    if valid.any() and not valid.all():
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
    fixed_range = settings.stabilise or settings.kind == "metric-distance"
    if stabiliser is not None:
        disparity = stabiliser.push(item.number, disparity, valid, rgb).disparity
    if not item.write:
        return None
    if fixed_range:
        distance, mask = postprocess.disparity_to_distance(disparity, settings.near, settings.far, valid=valid)
    else:
        distance, mask = relative_to_distance(disparity, settings.near, settings.far, valid=valid)
    if settings.sky == "mask":
        distance, mask = postprocess.mark_far_field(distance, mask, settings.far)
    disparity_out = np.where(valid, disparity, 0.0).astype(np.float32)
    return _frame_outputs(item.number, rgb, distance, disparity_out, mask, settings, fixed_range)


def _frame_outputs(number, rgb, distance, disparity, mask, settings: _Settings, fixed_range: bool) -> _FrameOutputs:
    tag = frame_tag(number)
    save = settings.save
    exr: dict[str, np.ndarray] = {}
    png16: dict[str, tuple[np.ndarray, float | None, float | None]] = {}
    images: dict[str, np.ndarray] = {}
    if "distance" in save:
        exr[f"distance_{tag}.exr"] = distance
        if "png16" in save:
            png16[f"distance_{tag}.png"] = (distance, settings.near, settings.far)
    if "disparity" in save:
        exr[f"disparity_{tag}.exr"] = disparity
        if "png16" in save:
            png16[f"disparity_{tag}.png"] = (disparity, 0.0, 1.0 / settings.near) if fixed_range else (disparity, None, None)
    if "mask" in save:
        exr[f"mask_{tag}.exr"] = mask.astype(np.float32)
    if {"preview", "rgbd"} & set(save):
        inverse = np.where(mask, 1.0 / np.maximum(distance, 1e-12), 0.0)
        low, high = 1.0 / settings.display_far, 1.0 / settings.display_near
        level = np.clip((inverse - low) / (high - low), 0.0, 1.0)
        colour = _to_uint8(rgb)
        if "preview" in save:
            if fixed_range:
                mapped = _inferno(level, mask)
            else:
                mapped = image_io.colorize(disparity, mask)
            images[f"preview_{tag}.png"] = _fit_width(np.concatenate([colour, mapped], axis=1), PREVIEW_MAX_WIDTH)
        if "rgbd" in save:
            grey = np.where(mask, np.round(level * 255), 0).astype(np.uint8)
            images[f"rgbd_{tag}.png"] = np.concatenate([colour, np.repeat(grey[..., None], 3, axis=2)], axis=0)
    return _FrameOutputs(number, exr, png16, images)


def _write_frame(folder: Path, outputs: _FrameOutputs) -> None:
    for name, values in outputs.exr.items():
        image_io.write_exr(folder / name, values)
    for name, (values, low, high) in outputs.png16.items():
        image_io.write_png16(folder / name, values, low, high)
    for name, image in outputs.rgb_images.items():
        image_io.write_bytes_atomic(folder / name, _encode_rgb_png(folder / name, image))


def _read_rgb_png(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise Depth360Error(f"cannot read preview {path} to put it into the preview video")
    return image[..., ::-1]


def _resolve_range(info: video_io.SourceInfo, frames) -> tuple[int, int | None]:
    if frames is None:
        first, last = 1, None
    elif isinstance(frames, str):
        parsed = video_io.parse_frame_range(frames)
        first, last = parsed.first, parsed.last
    elif isinstance(frames, video_io.FrameRange):
        first, last = frames.first, frames.last
    else:
        first, last = (int(v) if v is not None else None for v in frames)
        if first is None or first < 1 or (last is not None and last < first):
            raise BadInputError(f"frames {frames}: not a 1-based inclusive range")
    count = info.frame_count if info.frame_count_exact else None
    if count is not None:
        if first > count:
            raise BadInputError(f"{info.path} has {count} frames; --frames starts at {first}")
        if last is not None and last > count:
            raise BadInputError(f"{info.path} has {count} frames; --frames ends at {last}")
        last = count if last is None else last
    return first, last


def run_sequence(
    source: str | os.PathLike | video_io.SourceInfo,
    out_dir: str | os.PathLike,
    frame_estimator: FrameEstimator,
    *,
    frames: str | tuple[int, int | None] | video_io.FrameRange | None = None,
    save: Iterable[str] = DEFAULT_SAVE,
    near: float | None = None,
    far: float | None = None,
    stabilise: bool = True,
    stabiliser: StabiliserSettings | None = None,
    upsampling: Upsampling = "edge-aware",
    refine: bool = False,
    smoothing: postprocess.Smoothing = "none",
    sky: SkyMode = "keep",
    wrap: bool = True,
    progress: ProgressMode = "bar",
    resume: bool = True,
    sidecar_extra: dict | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> SequenceResult:
    """Estimate depth for every frame of a video or image sequence and write it (module docstring).

    `frames`: "A-B" (1-based, inclusive), a FrameRange or (A, B); None is the whole
    source. `save`: kinds among SAVE_KINDS. `near`/`far`: the calibration (defaults
    1/100 m relative, 0.01/1000 m metric). `stabilise`: temporal.py (alignment for
    relative models, the motion-aware filter for all); `stabiliser` tunes it.
    `upsampling`: how a prediction smaller than the frame is brought to full size;
    `refine`: edge-aware refinement at full size; `smoothing`: none, median or
    bilateral; `sky`: "mask" takes pixels at `far` out of the mask. `wrap`: equirect
    filters wrap at the seam. `progress`: "bar" (stderr), "json" (stdout lines) or "none".
    `resume`: skip frames whose files all exist. Raises BadInputError for bad input
    (naming the file and frame) and Depth360Error for an unwritable output folder,
    both before any frame is written.
    """
    started = time.perf_counter()
    stderr = stderr or sys.stderr
    save = _normalise_save(save)
    kind = frame_estimator.kind
    if kind not in ESTIMATOR_KINDS:
        raise ValueError(f"frame estimator kind must be one of {', '.join(ESTIMATOR_KINDS)}, got {kind!r}")
    if (near is None) != (far is None):
        raise BadInputError("--near and --far go together: give both or neither")
    metric = kind == "metric-distance"
    user_range = near is not None
    near = float(near) if user_range else (METRIC_NEAR if metric else RELATIVE_NEAR)
    far = float(far) if user_range else (METRIC_FAR if metric else RELATIVE_FAR)
    if not 0.0 < near < far:
        raise BadInputError(f"--near ({near}) must be positive and less than --far ({far})")
    display = (near, far) if user_range or not metric else (METRIC_DISPLAY_NEAR, METRIC_DISPLAY_FAR)
    if upsampling not in ("edge-aware", "bilinear") or sky not in ("keep", "mask"):
        raise ValueError(f"upsampling must be edge-aware|bilinear and sky keep|mask, got {upsampling!r}, {sky!r}")
    if progress not in ("bar", "json", "none"):
        raise ValueError(f"progress must be bar, json or none, got {progress!r}")

    info = source if isinstance(source, video_io.SourceInfo) else video_io.probe(source)
    first, last = _resolve_range(info, frames)
    folder = Path(out_dir) / info.name
    _check_writable(folder)
    ranged = frames is not None
    suffix = f"_{frame_tag(first)}-{frame_tag(last)}" if ranged and last is not None else ""
    sidecar_path = folder / f"{info.name}{suffix}.json"
    preview_path = folder / f"preview{suffix}.mp4" if "preview" in save else None
    run_files = [sidecar_path.name] + ([preview_path.name] if preview_path else [])
    _remove_stale_temporaries(folder, first, last, run_files)
    for note in info.notes:
        print(f"warning: {note}", file=stderr)

    stabiliser_settings = stabiliser or StabiliserSettings()
    context = stabiliser_settings.context_frames if stabilise else 0
    settings = _Settings(kind, near, far, display[0], display[1], save, stabilise, upsampling, refine,
                         smoothing, sky, wrap)

    complete_cache: dict[int, bool] = {}

    def complete(number: int) -> bool:
        if number not in complete_cache:
            complete_cache[number] = resume and frame_is_complete(folder, save, number)
        return complete_cache[number]

    def to_write(number: int) -> bool:
        return number >= first and (last is None or number <= last) and not complete(number)

    def needed(number: int) -> bool:
        return any(to_write(m) for m in range(number, number + context + 1))

    known_total = last - first + 1 if last is not None else (info.frame_count or 0) - first + 1
    reporter = Progress(max(known_total, 0), progress, label=info.name, stdout=stdout, stderr=stderr)
    skipped: list[int] = []
    if last is not None:
        skipped = [n for n in range(first, last + 1) if not to_write(n)]
        reporter.skipped(len(skipped))
    start = next((n for n in range(max(1, first - context), (last or first) + 1) if needed(n)), None)
    if last is None:
        start = max(1, first - context)

    written: list[int] = []
    context_frames: list[int] = []
    stages = _Stages()
    batch = max(1, int(frame_estimator.batch_size))
    decoded_q: queue.Queue = queue.Queue(maxsize=batch + QUEUE_FRAMES)
    estimated_q: queue.Queue = queue.Queue(maxsize=batch + QUEUE_FRAMES)
    outputs_q: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
    preview = _PreviewVideo(preview_path, info.fps or 24.0) if preview_path else None
    state = {"last_seen": 0}

    def decode():
        if start is None:
            stages.put(decoded_q, _END)
            return
        tick = time.perf_counter()
        for number, rgb in video_io.read_frames(info, start, last, wanted=needed):
            state["last_seen"] = max(state["last_seen"], number)
            stages.add_busy("decode", time.perf_counter() - tick)
            reporter.start()
            stages.put(decoded_q, _FrameItem(number, rgb, to_write(number)))
            tick = time.perf_counter()
        stages.put(decoded_q, _END)

    def estimate():
        done = False
        while not done:
            items = []
            while len(items) < batch:
                item = stages.get(decoded_q)
                if item is _END:
                    done = True
                    break
                items.append(item)
            if items:
                tick = time.perf_counter()
                predictions = frame_estimator.estimate(np.stack([i.rgb for i in items]))
                stages.add_busy("estimate", time.perf_counter() - tick)
                if len(predictions) != len(items):
                    raise ValueError(f"frame estimator returned {len(predictions)} predictions for {len(items)} frames")
                depth_frame = getattr(frame_estimator, "depth_frame", None)
                for item, prediction in zip(items, predictions, strict=True):
                    item.prediction = prediction
                    if depth_frame is not None:
                        item.rgb = depth_frame(item.rgb)
                    stages.put(estimated_q, item)
        stages.put(estimated_q, _END)

    def post():
        temporal = TemporalStabiliser(kind, near, far, stabiliser_settings, wrap=wrap) if stabilise else None
        while (item := stages.get(estimated_q)) is not _END:
            tick = time.perf_counter()
            outputs = _postprocess(item, settings, temporal)
            stages.add_busy("post", time.perf_counter() - tick)
            if outputs is None:
                context_frames.append(item.number)
            else:
                stages.put(outputs_q, outputs)
        stages.put(outputs_q, _END)

    def write():
        emitted = first - 1  # the last frame put into the preview video

        def emit_complete_until(number: int) -> None:
            nonlocal emitted
            while emitted + 1 < number:
                emitted += 1
                preview.add(_read_rgb_png(folder / f"preview_{frame_tag(emitted)}.png"))

        while (outputs := stages.get(outputs_q)) is not _END:
            tick = time.perf_counter()
            _write_frame(folder, outputs)
            if preview is not None:
                emit_complete_until(outputs.number)
                preview.add(outputs.rgb_images[f"preview_{frame_tag(outputs.number)}.png"])
                emitted = outputs.number
            stages.add_busy("write", time.perf_counter() - tick)
            written.append(outputs.number)
            reporter.frame_done(outputs.number)
        if preview is not None:
            end = last if last is not None else max(state["last_seen"], emitted)
            emit_complete_until(end + 1)

    success = False
    try:
        for name, function in (("decode", decode), ("estimate", estimate), ("post", post), ("write", write)):
            stages.start(name, function)
        stages.join()
        success = True
    finally:
        if preview is not None:
            preview.close(success)
        if progress == "bar":
            reporter.finish()

    if last is None:
        last = max([state["last_seen"], *written, first])
        skipped = [n for n in range(first, last + 1) if n not in set(written)]
    wall = time.perf_counter() - started
    timings = {"wall": wall, **stages.busy}
    result = SequenceResult(
        folder=folder, name=info.name, first=first, last=last, written=tuple(written),
        skipped=tuple(skipped), context=tuple(context_frames), sidecar=sidecar_path,
        preview_video=preview_path if preview is not None and preview.frames else None,
        timings=timings, notes=info.notes,
    )
    _write_sidecar(result, info, frame_estimator, settings, stabiliser_settings if stabilise else None,
                   context, sidecar_extra)
    return result


def _write_sidecar(result: SequenceResult, info: video_io.SourceInfo, frame_estimator, settings: _Settings,
                   stabiliser: StabiliserSettings | None, context: int, extra: dict | None) -> None:
    tag = "#####"
    outputs = {
        "distance": f"distance_{tag}.exr (float32 metres along each ray; invalid pixels hold far)",
        "disparity": (f"disparity_{tag}.exr (" + ("stabilised inverse distance 1/m, shot units" if settings.stabilise
                      else "the estimator's output resampled to the frame") + "; invalid pixels hold 0)"),
        "mask": f"mask_{tag}.exr (1 valid, 0 invalid)",
        "png16": ("16-bit PNG: distance linear from near (0) to far (65535); disparity from 0 to 1/near"
                  if settings.stabilise or settings.kind == "metric-distance"
                  else "16-bit PNG: distance linear from near (0) to far (65535); disparity min..max of each frame"),
        "preview": f"preview_{tag}.png and the run's MP4: colour | inferno inverse distance (near bright)",
        "rgbd": (f"rgbd_{tag}.png over-under: top colour, bottom grey 255*(1/d - 1/far)/(1/near - 1/far) "
                 "(white near, black far or invalid)"),
    }
    wall = result.timings.get("wall", 0.0)
    sidecar = {
        "input": info.describe(),
        "version": __version__,
        "model": frame_estimator.describe(),
        "frames": {"first": result.first, "last": result.last, "written": len(result.written),
                   "skipped_complete": len(result.skipped), "context_estimated": len(result.context),
                   "context_rule": f"frame t depends on frames t-{context}..t"},
        "options": {
            "save": list(settings.save), "near": settings.near, "far": settings.far,
            "display_near": settings.display_near, "display_far": settings.display_far,
            "stabilise": asdict(stabiliser) if stabiliser else None, "upsampling": settings.upsampling,
            "refine": settings.refine, "smoothing": settings.smoothing, "sky": settings.sky, "wrap": settings.wrap,
        },
        "outputs": {k: v for k, v in outputs.items() if k in settings.save},
        "preview_video": result.preview_video.name if result.preview_video else None,
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "fps": round(len(result.written) / wall, 4) if wall > 0 else None,
        "notes": list(result.notes),
    }
    if extra:
        sidecar.update(extra)
    image_io.write_json(result.sidecar, sidecar)
