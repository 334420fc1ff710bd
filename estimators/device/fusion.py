"""The 360 frame's trip on a torch device: views -> predict -> align -> blend -> sky -> calibrate.

`estimate_frames` is panorama.fusion.estimate_equirect for a batch of frames whose work
stays on one torch device: the views of every frame in one `grid_sample`, the network on
device tensors (an estimator with `predict_tensor`; a numpy plug-in gets host copies and
gives numpy back), each frame's alignment solved on the device, the blend of every frame in
one call, the sky, then the calibration. It takes the same options and makes the same
decisions; the numpy trip stays the reference (tests/engine/test_device_path.py holds the
two together). `estimate_equirect` is the one-frame form with numpy in and out.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..models.plugins import ESTIMATOR_KINDS, is_metric
from ..panorama.fusion import (
    DEFAULT_FAR,
    DEFAULT_NEAR,
    METRIC_FAR,
    METRIC_NEAR,
    MIN_EQUIRECT_HEIGHT,
    EquirectDepth,
    native_view_size,
)
from ..panorama.projection import View, make_views
from . import calibration, infinity, transfer
from .alignment import align_views, apply_alignment
from .blending import blend
from .geometry import view_cosines, view_size
from .memory import run_batched
from .projection import frames_to_views, ray_tensor

_PICTURES: ThreadPoolExecutor | None = None
# Intra-op threads of the trip's own work on a CPU device. Its operations are many and small
# next to the network's (selections on a few hundred thousand values, gathers of a few
# thousand pairs), where OpenMP's fork/join costs more than it gains, and on a busy machine
# far more (measured: 2 threads ran the 4K trip 2x slower than 1 at load average 12 on 2
# cores). The pipeline's stages already run on threads of their own. The network keeps the
# process's setting. (OpenMP's thread count is per calling thread: other threads keep theirs.)
CPU_TRIP_THREADS = 1


_OUTER = threading.local()  # the calling thread's own thread count, while trip_threads holds it


@contextlib.contextmanager
def trip_threads(device: torch.device):
    """Run the block with CPU_TRIP_THREADS intra-op threads when `device` is the CPU (else as is)."""
    if device.type != "cpu" or getattr(_OUTER, "threads", None) is not None:
        yield
        return
    _OUTER.threads = torch.get_num_threads()
    torch.set_num_threads(CPU_TRIP_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(_OUTER.threads)
        _OUTER.threads = None


@contextlib.contextmanager
def network_threads():
    """Inside trip_threads: the network gets the thread's own count back."""
    outer = getattr(_OUTER, "threads", None)
    if outer is None:
        yield
        return
    torch.set_num_threads(outer)
    try:
        yield
    finally:
        torch.set_num_threads(CPU_TRIP_THREADS)


@dataclass
class DeviceDepth:
    """One frame's fused depth on the device (fusion.EquirectDepth's fields, as tensors)."""

    disparity: torch.Tensor
    distance: torch.Tensor | None
    mask: torch.Tensor
    sky: torch.Tensor
    near: float
    far: float
    views: tuple[View, ...]
    alignment: Any = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_numpy(self) -> EquirectDepth:
        """The result as panorama.fusion.EquirectDepth (host arrays)."""
        distance = None if self.distance is None else self.distance.cpu().numpy()
        return EquirectDepth(self.disparity.cpu().numpy(), distance, self.mask.cpu().numpy(), self.near, self.far,
                             self.views, dict(self.timings), self.alignment, self.sky.cpu().numpy())


@dataclass
class _Clock:
    """Seconds per stage; waits for the device at each boundary so the figures are the stage's own."""

    device: torch.device
    timings: dict[str, float] = field(default_factory=dict)
    tick: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        transfer.synchronize(self.device)
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - self.tick
        self.tick = now


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"equirect frames must be [N, H, W, 3] RGB, got shape {frames.shape}")
    height, width = frames.shape[1:3]
    if width != 2 * height:
        raise ValueError(
            f"the image is {width} x {height}, not 2:1 (360 equirect footage is twice as wide "
            "as high); for an ordinary photo use --projection perspective")
    if height < MIN_EQUIRECT_HEIGHT:
        raise ValueError(f"the image is {width} x {height}, too small for 360 depth "
                         f"(at least {2 * MIN_EQUIRECT_HEIGHT} x {MIN_EQUIRECT_HEIGHT})")
    return frames


def check_kind(estimator) -> str:
    kind = getattr(estimator, "kind", None)
    if kind not in ESTIMATOR_KINDS:
        raise ValueError(f"estimator kind must be one of {', '.join(ESTIMATOR_KINDS)}, got {kind!r}")
    return kind


def _pictures(frames: np.ndarray) -> list:
    """Start the host's part of the sky (the pictures at the work size) on worker threads."""
    global _PICTURES
    if _PICTURES is None:
        _PICTURES = ThreadPoolExecutor(max_workers=2, thread_name_prefix="depth360-sky")
    return [_PICTURES.submit(infinity.work_picture, frame) for frame in frames]


def predict(estimator, images: torch.Tensor, views: tuple[View, ...], batch_size: int, *,
            on_shrink=None) -> torch.Tensor:
    """Run the estimator over view images [N, h, w, 3] (N a multiple of len(views)): [N, h, w] float32."""
    count, h, w = images.shape[:3]
    native = getattr(estimator, "predict_tensor", None)
    rays = None if native is not None else ray_tensor(views, "cpu").numpy()

    def step(indices):
        batch = images[indices[0]:indices[-1] + 1]
        if native is not None:
            result = native(batch)
        else:
            view_rays = rays[[i % len(views) for i in indices]]
            result = torch.from_numpy(np.asarray(estimator.predict(batch.cpu().numpy(), view_rays)))
        if tuple(result.shape) != (len(indices), h, w):
            raise ValueError(f"estimator returned shape {tuple(result.shape)} for views of shape {(len(indices), h, w)}")
        return [result.to(images.device, torch.float32)]

    device = images.device
    with network_threads():
        parts = run_batched(step, range(count), batch_size, device=device, what="view", on_shrink=on_shrink)
    return torch.cat(parts)


@dataclass(frozen=True)
class FusionOptions:
    """estimate_equirect's options past the views (panorama.fusion.estimate_equirect documents them)."""

    kind: str
    near: float
    far: float
    align: bool = True
    grid: int = 4
    calibrate: bool = True
    sky: bool = True
    max_depth: float | None = None
    align_options: dict = field(default_factory=dict)


def align_predictions(raw: torch.Tensor, views: tuple[View, ...], options: FusionOptions,
                      exclude: torch.Tensor | None = None):
    """fusion.align_predictions for one frame's views [V, h, w]: (aligned, valid, alignment or None)."""
    kind = options.kind
    if kind == "metric-depth":
        raw = raw / view_cosines(views, raw.device)
        kind = "metric-distance"
    nan = torch.tensor(float("nan"), dtype=torch.float32, device=raw.device)
    if kind == "metric-distance":
        disparities = torch.where((raw > 0) & torch.isfinite(raw), 1.0 / raw, nan)
        if exclude is not None:
            disparities = torch.where(exclude, nan, disparities)
    else:
        disparities = raw
    valid = torch.isfinite(disparities)
    if not options.align or len(views) < 2:
        if kind != "metric-distance":
            disparities = disparities * view_cosines(views, raw.device)
        return torch.nan_to_num(disparities, nan=0.0), valid, None
    evidence = valid if exclude is None else valid & ~exclude
    alignment = align_views(disparities, views, kind=kind, grid=options.grid, valid=evidence,
                            **options.align_options)
    zeroed = torch.where(valid, disparities, torch.zeros((), dtype=torch.float32, device=raw.device))
    return apply_alignment(alignment, zeroed, views), valid, alignment


def _fuse(raws: list[torch.Tensor], views, options: FusionOptions, size, clock: _Clock, excludes=None):
    """Align each frame's views, blend all frames at once: (merged [F, H, W], weight, alignments)."""
    results = [align_predictions(raw, views, options, None if excludes is None else excludes[i])
               for i, raw in enumerate(raws)]
    clock.lap("align")
    aligned = torch.stack([r[0] for r in results])
    valid = torch.stack([r[1] for r in results])
    merged, weight = blend(aligned, views, *size, valid=valid)
    clock.lap("merge")
    return merged, weight, [r[2] for r in results]


def _infinity(merged, seen, raw, views, options: FusionOptions, picture, rgb):
    """fusion._find_infinity on the device: the frame's sky, and each view's share of it."""
    if is_metric(options.kind):
        beyond = infinity.beyond_range(raw, options.max_depth)
        share, weight = blend(beyond.to(torch.float32)[None], views, *merged.shape)
        return (share[0] > 0.5) & (weight[0] > 0), beyond
    sky = infinity.find_sky(merged, seen, picture, infinity.is_flat(raw), rgb)
    return sky, infinity.sample_mask(sky, views)


def resolve_options(estimator, *, near=None, far=None, align=True, grid=4, calibrate=True, sky=True,
                    **align_options) -> FusionOptions:
    """FusionOptions with estimate_equirect's defaults for the estimator's kind."""
    kind = check_kind(estimator)
    metric = is_metric(kind)
    near = (METRIC_NEAR if metric else DEFAULT_NEAR) if near is None else float(near)
    far = (METRIC_FAR if metric else DEFAULT_FAR) if far is None else float(far)
    return FusionOptions(kind, near, far, align, grid, calibrate, sky, getattr(estimator, "max_depth", None),
                         dict(align_options))


def layout_views(estimator, views, height: int, width: int, fov_deg=None, view_size=None) -> tuple[View, ...]:
    """The views of a preset (sized as estimate_equirect sizes them) or the given views."""
    if isinstance(views, str):
        if view_size is None:
            view_size = native_view_size(estimator, views, width, fov_deg)
        return make_views(views, height, width, fov_deg=fov_deg, view_size=view_size)
    return tuple(views)


def estimate_frames(frames: np.ndarray, estimator, views: tuple[View, ...], options: FusionOptions, *,
                    device: torch.device, batch_size: int = 8, on_shrink=None,
                    on_device: torch.Tensor | None = None) -> list[DeviceDepth]:
    """The fused depth of equirect frames [F, H, W, 3] (float 0..1, host), each a DeviceDepth.

    `batch_size`: views per estimator call (halved on out-of-memory, `on_shrink` told);
    `on_device`: the frames already uploaded (else they are, through pinned memory).
    """
    with trip_threads(device):
        return _estimate_frames(_check_frames(frames), estimator, views, options, device, batch_size, on_shrink,
                                on_device)


def _estimate_frames(frames, estimator, views, options: FusionOptions, device, batch_size, on_shrink, on_device):
    count, height, width = frames.shape[:3]
    view_size(views)
    clock = _Clock(device)
    pictures = _pictures(frames) if options.sky and not is_metric(options.kind) else None
    images = frames_to_views(on_device if on_device is not None else transfer.upload(frames, device), views)
    clock.lap("project")
    flat = images.reshape(count * len(views), *images.shape[2:])
    raw = predict(estimator, flat, views, batch_size, on_shrink=on_shrink).reshape(count, len(views), *images.shape[2:4])
    clock.lap("predict")
    clock.timings.update(align=0.0, merge=0.0)
    merged, weight, alignments = _fuse(list(raw), views, options, (height, width), clock)
    skies = torch.zeros((count, height, width), dtype=torch.bool, device=device)
    if options.sky:
        skies, merged, weight = _sky_pass(frames, raw, views, options, merged, weight, alignments, pictures, clock)
    seen = (weight > 0) & ~skies
    results = []
    for f in range(count):
        distance, mask = None, seen[f]
        if options.calibrate:
            rule = calibration.metric_to_distance if is_metric(options.kind) else calibration.relative_to_distance
            distance, mask = rule(merged[f], options.near, options.far, valid=seen[f])
        results.append(DeviceDepth(merged[f], distance, mask, skies[f], options.near, options.far, tuple(views),
                                   alignments[f]))
    if options.calibrate:
        clock.lap("calibrate")
    for result in results:
        result.timings = {k: v / count for k, v in clock.timings.items()}
    return results


def _sky_pass(frames, raw, views, options: FusionOptions, merged, weight, alignments, pictures, clock: _Clock):
    """Find each frame's infinity; refuse the frames that have some (infinity left out of the alignment)."""
    count = raw.shape[0]
    skies, excludes = [], []
    for f in range(count):
        picture = pictures[f].result() if pictures is not None else None
        sky, exclude = _infinity(merged[f], weight[f] > 0, raw[f], views, options, picture, frames[f])
        skies.append(sky)
        excludes.append(exclude)
    skies = torch.stack(skies)
    clock.lap("sky")
    again = [f for f in range(count) if bool(excludes[f].any())]
    if again:
        merged, weight = merged.clone(), weight.clone()
        redone, redone_weight, redone_alignments = _fuse([raw[f] for f in again], views, options,
                                                         merged.shape[1:], clock, [excludes[f] for f in again])
        for i, f in enumerate(again):
            merged[f], weight[f], alignments[f] = redone[i], redone_weight[i], redone_alignments[i]
    return skies, merged, weight


def estimate_equirect(image: np.ndarray, estimator, views="cube", *, device="cpu", fov_deg=None, view_size=None,
                      batch_size: int | None = None, **options) -> EquirectDepth:
    """panorama.fusion.estimate_equirect on a torch device: the same arguments, the same result type."""
    image = _check_frames(np.asarray(image)[None])[0]
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    resolved = resolve_options(estimator, **options)
    layout = layout_views(estimator, views, *image.shape[:2], fov_deg, view_size)
    frame = np.asarray(image, np.float32)[None]
    result = estimate_frames(frame, estimator, layout, resolved, device=torch.device(device),
                             batch_size=batch_size or len(layout))
    return result[0].to_numpy()
