"""Seam-free 360 depth from any estimator: views -> predict -> align -> blend -> calibrate.

`estimate_equirect` is the entry point of the CLI, the video pipeline and Blender.
The estimator is anything with `kind` (models.plugins.ESTIMATOR_KINDS) and
`predict(images [N, h, w, 3] float32 RGB 0..1, rays [N, h, w, 3] float32) -> [N, h, w]`
(DESIGN.md), and optionally `native_size`, the input side it works at (the default view
size is capped there). A relative result is inverse planar depth of each view up to scale and
shift; a `metric-depth` result is metres to each view's image plane (as the metric networks
give it) and is turned into distance along each ray; a `metric-distance` result already is
Euclidean distance along each given ray, in metres.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..models.plugins import ESTIMATOR_KINDS, is_metric
from ..postprocess.calibration import metric_to_distance, relative_to_distance
from .alignment import Alignment, align_views
from .blending import blend_to_equirect
from .infinity import beyond_range, find_sky, is_flat, sample_mask
from .projection import (
    DEFAULT_FOV_DEG,
    Interpolation,
    Preset,
    View,
    default_view_size,
    equirect_to_views,
    make_views,
)

# Defaults of the near/far rule (calibration.py) for relative estimators, in metres.
DEFAULT_NEAR = 1.0
DEFAULT_FAR = 100.0
# Metric results are only clamped, to this generous range, unless the caller says otherwise.
METRIC_NEAR = 0.01
METRIC_FAR = 1000.0
# Input bytes per batch when batch_size is None; networks use many times their input.
BATCH_BUDGET_BYTES = 64 * 1024 * 1024
# Smallest equirect frame (rows) the 360 path accepts: a few pixels per view side.
MIN_EQUIRECT_HEIGHT = 8


class Estimator(Protocol):
    """The estimator protocol of DESIGN.md (built-in networks and plug-ins alike)."""

    kind: str

    def predict(self, images: np.ndarray, rays: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class EquirectDepth:
    """The fused result at the input's resolution.

    `disparity`: float32 [H, W] inverse distance along the rays: metric (1/m) for metric
    estimators, relative (aligned, up to one global scale and shift) otherwise.
    `distance`: float32 [H, W] metres, no NaN/Inf; invalid pixels hold `far` (None when not
    calibrated). `mask`: bool [H, W], True where the distance is valid (not sky, not
    unseen; uncalibrated: where some view saw the pixel).
    `timings`: seconds per stage. `alignment`: the solved correction (None if skipped).
    `sky`: bool [H, W], the pixels at infinity (panorama.infinity); off the mask.
    """

    disparity: np.ndarray
    distance: np.ndarray | None
    mask: np.ndarray
    near: float
    far: float
    views: tuple[View, ...]
    timings: dict[str, float] = field(default_factory=dict)
    alignment: Alignment | None = None
    sky: np.ndarray | None = None


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"equirect image must be [H, W, 3] RGB, got shape {image.shape}")
    height, width = image.shape[:2]
    if width != 2 * height:
        raise ValueError(
            f"the image is {width} x {height}, not 2:1 (360 equirect footage is twice as wide "
            "as high); for an ordinary photo use --projection perspective"
        )
    if height < MIN_EQUIRECT_HEIGHT:
        raise ValueError(
            f"the image is {width} x {height}, too small for 360 depth "
            f"(at least {2 * MIN_EQUIRECT_HEIGHT} x {MIN_EQUIRECT_HEIGHT})"
        )
    return image.astype(np.float32, copy=False)


def native_view_size(estimator: object, preset: str, width: int, fov_deg: float | None = None) -> int | None:
    """Default side of the `cube`/`ico` views for an estimator on a panorama `width` wide.

    The panorama's pixel density (`projection.default_view_size`), but no larger than the
    estimator's `native_size` (optional in the protocol; the built-in networks give their
    input side, 518 for Depth Anything V2): a network sees its native size anyway, so
    larger views only cost projection and blending time. None for the `equirect` preset
    (the single pass keeps the frame's size) and for unknown presets (make_views says why).
    """
    if preset not in DEFAULT_FOV_DEG:
        return None
    density = default_view_size(DEFAULT_FOV_DEG[preset] if fov_deg is None else float(fov_deg), width)
    native = getattr(estimator, "native_size", None)
    if native is None:
        return density
    return max(2, min(density, int(native)))


def project_to_views(
    image: np.ndarray, views: tuple[View, ...], interpolation: Interpolation = "bilinear"
) -> list[np.ndarray]:
    """Sample an equirect RGB image [H, W, 3] (0..1) into every view: float32 [h, w, 3] each."""
    return [np.clip(v, 0.0, 1.0) for v in equirect_to_views(_check_image(image), views, interpolation)]


def merge_views(
    view_maps: list[np.ndarray], views: tuple[View, ...], height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Blend per-view maps (already along the rays) into [H, W]; returns (merged, weight sum)."""
    return blend_to_equirect(view_maps, views, height, width)


def default_batch_size(view: View, budget_bytes: int = BATCH_BUDGET_BYTES) -> int:
    """How many views of this size fit the input budget (images + rays, float32), at least 1."""
    per_view = view.height * view.width * 6 * 4
    return max(1, budget_bytes // per_view)


def predict_views(
    estimator: Estimator, images: list[np.ndarray], views: tuple[View, ...], batch_size: int | None = None
) -> list[np.ndarray]:
    """Run the estimator over the views in batches of equal-size views; float32 [h, w] per view."""
    outputs: list[np.ndarray | None] = [None] * len(views)
    i = 0
    while i < len(views):
        size = (views[i].height, views[i].width)
        limit = batch_size if batch_size is not None else default_batch_size(views[i])
        j = i
        while j < len(views) and j - i < limit and (views[j].height, views[j].width) == size:
            j += 1
        batch_images = np.stack(images[i:j]).astype(np.float32, copy=False)
        batch_rays = np.stack([v.rays() for v in views[i:j]])
        result = np.asarray(estimator.predict(batch_images, batch_rays))
        if result.shape != (j - i, *size):
            raise ValueError(
                f"estimator returned shape {result.shape} for views of shape {(j - i, *size)}"
            )
        for k in range(i, j):
            outputs[k] = result[k - i].astype(np.float32, copy=False)
        i = j
    return outputs  # type: ignore[return-value]


def estimate_equirect(
    image: np.ndarray,
    estimator: Estimator,
    views: Preset | tuple[View, ...] = "cube",
    *,
    fov_deg: float | None = None,
    view_size: int | None = None,
    batch_size: int | None = None,
    align: bool = True,
    grid: int = 4,
    near: float | None = None,
    far: float | None = None,
    calibrate: bool = True,
    sky: bool = True,
    **align_options: Any,
) -> EquirectDepth:
    """Depth of an equirect image [H, W, 3] (float 0..1, W = 2H) with any estimator.

    `views`: a preset (`cube`, `ico`, `equirect`) or explicit views; `fov_deg` and
    `view_size` tune the preset (defaults: 110 deg cube, 90 deg ico, views of the
    panorama's pixel density capped at the estimator's `native_size`, see
    `native_view_size`). `batch_size`: views per `predict` call (None: sized by an input budget).
    `align`: solve the joint deformable alignment (False: naive stitching);
    `grid`: control points per view side. `near`/`far`: calibration (calibration.py);
    defaults 1 m / 100 m for relative and 0.01 m / 1000 m (clamp only) for metric.
    `calibrate` False leaves `distance` None (the pipeline calibrates after stabilising).
    `sky`: find the pixels at infinity (panorama.infinity): left out of the views'
    alignment, off the mask, out of the calibration's percentiles.
    """
    kind = _check_kind(estimator)
    image = _check_image(image)
    height, width = image.shape[:2]
    metric = is_metric(kind)
    near = (METRIC_NEAR if metric else DEFAULT_NEAR) if near is None else float(near)
    far = (METRIC_FAR if metric else DEFAULT_FAR) if far is None else float(far)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(views, str):
        if view_size is None:
            view_size = native_view_size(estimator, views, width, fov_deg)
        views = make_views(views, height, width, fov_deg=fov_deg, view_size=view_size)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    view_images = project_to_views(image, views)
    t1 = time.perf_counter()
    raw = predict_views(estimator, view_images, views, batch_size)
    timings.update(project=t1 - t0, predict=time.perf_counter() - t1, align=0.0, merge=0.0)

    def fuse(exclude=None):
        return _fuse(raw, views, kind, (height, width), timings, exclude, align=align, grid=grid, **align_options)

    merged, weight, alignment = fuse()
    sky_mask = np.zeros((height, width), bool)
    if sky:  # infinity found on a first fusion, then left out of the views' alignment
        tick = time.perf_counter()
        sky_mask, infinity = _find_infinity(merged, weight > 0, raw, views, kind, image,
                                            getattr(estimator, "max_depth", None))
        timings["sky"] = time.perf_counter() - tick
        if any(part.any() for part in infinity):
            merged, weight, alignment = fuse(infinity)
    t4 = time.perf_counter()
    seen = (weight > 0) & ~sky_mask
    distance, mask = None, seen
    if calibrate:
        calibrated = metric_to_distance if metric else relative_to_distance
        distance, mask = calibrated(merged, near, far, valid=seen)
        timings["calibrate"] = time.perf_counter() - t4
    # blend_to_equirect leaves unseen pixels at 0: `merged` already is the disparity to return.
    return EquirectDepth(merged, distance, mask, near, far, tuple(views), timings, alignment, sky_mask)


def _check_kind(estimator) -> str:
    kind = getattr(estimator, "kind", None)
    if kind not in ESTIMATOR_KINDS:
        raise ValueError(f"estimator kind must be one of {', '.join(ESTIMATOR_KINDS)}, got {kind!r}")
    return kind


def _fuse(raw, views, kind: str, size: tuple[int, int], timings: dict, exclude, **align_options):
    """Align the views' predictions (leaving `exclude` out) and blend them: (merged, weight, alignment)."""
    tick = time.perf_counter()
    aligned, valid, solved = align_predictions(raw, views, kind, exclude=exclude, **align_options)
    timings["align"] += time.perf_counter() - tick
    tick = time.perf_counter()
    merged, weight = blend_to_equirect(aligned, views, *size, valid=valid)
    timings["merge"] += time.perf_counter() - tick
    return merged, weight, solved


def _find_infinity(merged: np.ndarray, seen: np.ndarray, raw, views, kind: str, image: np.ndarray,
                   max_depth: float | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The frame's pixels at infinity, and each view's share of them (left out of the alignment).

    Relative: the sky at the fused disparity's floor, connected to the zenith (infinity.find_sky).
    Metric: what the model puts at or beyond its range (a metric output says where things are).
    """
    if is_metric(kind):
        beyond = [beyond_range(r, max_depth) for r in raw]
        share, weight = blend_to_equirect([b.astype(np.float32) for b in beyond], views, *merged.shape)
        return (share > 0.5) & (weight > 0), beyond
    sky = find_sky(merged, seen, image, flat_output=is_flat(raw))
    return sky, [sample_mask(sky, view) for view in views]


def align_predictions(raw: list[np.ndarray], views: tuple[View, ...], kind: str, *, align: bool = True,
                      grid: int = 4, exclude: list[np.ndarray] | None = None,
                      **align_options: Any) -> tuple[list[np.ndarray], list[np.ndarray], Alignment | None]:
    """Views' predictions as aligned disparity along their rays: (aligned, valid per view, the solve or None).

    `exclude`: per view, pixels left out of the alignment (not of the blend): candidates
    for infinity; a metric view's pixels beyond its range are left out of both.

    Metric results are distances: their inverses are aligned, by scale only (alignment.py).
    Planar metric depth (`metric-depth`) is first made distance along each pixel's ray:
    depth / cos(angle between the ray and the view's axis).
    """
    if kind == "metric-depth":
        raw = [planar_to_ray_distance(r, view) for r, view in zip(raw, views, strict=True)]
        kind = "metric-distance"
    if kind == "metric-distance":  # infinity (sky, beyond the model's range) is no evidence: NaN
        with np.errstate(divide="ignore", invalid="ignore"):
            disparities = [np.where((r > 0) & np.isfinite(r), 1.0 / r, np.nan).astype(np.float32) for r in raw]
    else:
        disparities = raw
    if exclude is not None and kind == "metric-distance":
        disparities = [np.where(out, np.nan, d).astype(np.float32) for d, out in zip(disparities, exclude, strict=True)]
    valid = [np.isfinite(d) for d in disparities]
    if not align or len(views) < 2:
        return naive_ray_disparity(disparities, views, kind), valid, None
    evidence = valid if exclude is None else [v & ~out for v, out in zip(valid, exclude, strict=True)]
    alignment = align_views(disparities, views, kind=kind, grid=grid, valid=evidence, **align_options)
    aligned = alignment.apply([np.where(v, d, 0.0) for d, v in zip(disparities, valid, strict=True)], views)
    return aligned, valid, alignment


def planar_to_ray_distance(depth: np.ndarray, view: View) -> np.ndarray:
    """Metres along a view's axis (depth to its image plane) as metres along each pixel's ray.

    An `equirect` view has no image plane (its cosines are 1): its "depth" already is distance.
    """
    return (np.asarray(depth, dtype=np.float32) / view.cos_to_axis()).astype(np.float32)


def naive_ray_disparity(disparities: list[np.ndarray], views: tuple[View, ...], kind: str) -> list[np.ndarray]:
    """Each view's output along its rays, with no alignment (naive stitching)."""
    if kind == "metric-distance":
        return [np.nan_to_num(d, nan=0.0).astype(np.float32) for d in disparities]
    return [np.nan_to_num(d * v.cos_to_axis(), nan=0.0).astype(np.float32) for d, v in zip(disparities, views, strict=True)]
