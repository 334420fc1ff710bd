"""360 video through a clip estimator: each view of the layout, followed over time, is a video.

`ViewStreamFusion` takes equirect frames in order and gives each frame's fused inverse
distance along the rays (as panorama.fusion does for a still):

1. each frame is projected into the layout's views (`fusion.project_to_views`; views of
   the panorama's pixel density capped at the estimator's native size, as for stills),
   kept as float16 until its windows have run;
2. every view stream goes through the estimator's windows (`clip_windows`, `local`
   anchors: a window depends on a fixed span of frames): `predict_clip(images [T, N, h, w,
   3], rays)` for groups of views, T = 32;
3. the window's views are aligned once for all its frames (`stream_alignment.solve_window`:
   one scale and shift per view per window, from the overlaps of all 32 frames); a
   relative window is then scaled onto the previous one on the 8 frames they share
   (`fit_scale`), so the whole segment keeps one scale; metric windows keep metres
   (planar metric depth is first made distance along each ray);
4. the 8 shared frames are blended from the previous window to this one (weights 0, 1/7,
   ..., 1, in inverse distance, per view), and each final frame's views are merged into
   the equirect frame (`blending.blend_to_equirect`).

A segment that starts mid-shot (a chunk, or a resume after finished frames) gets one
scale of its own; the post stage's calibration (near/far rule, stabiliser) does not
depend on it, so chunks with their context frames (`reach`) give what the whole shot does.
"""

from __future__ import annotations

import time

import numpy as np

from ..models.plugins import check_clip_prediction, is_metric
from ..panorama.blending import blend_to_equirect
from ..panorama.fusion import native_view_size, planar_to_ray_distance, project_to_views
from ..panorama.projection import View, make_views
from ..panorama.stream_alignment import WindowAlignment, fit_scale, solve_window
from .clip_windows import ALIGN, INTERP, OVERLAP, STRIDE, WINDOW, ClipStream, blend_weights

# Input bytes (float32 images) per predict_clip call: views are grouped to stay under it.
CLIP_BUDGET_BYTES = 256 * 1024 * 1024


class ViewStreamFusion(ClipStream):
    """Equirect frames [H, W, 3] in, (index, fused disparity [H, W], seen [H, W]) out (module docstring).

    `estimator`: has `kind` and `predict_clip`; `views`: a preset (cube, ico, equirect) or
    explicit views; `fov_deg`, `view_size` as in `fusion.estimate_equirect`.
    """

    def __init__(self, estimator, views="cube", *, fov_deg: float | None = None, view_size: int | None = None):
        super().__init__(anchor="local")
        self.estimator = estimator
        self.kind = estimator.kind
        self.preset = views
        self.fov_deg = fov_deg
        self.view_size = view_size
        self.views: tuple[View, ...] | None = None if isinstance(views, str) else tuple(views)
        self.size: tuple[int, int] | None = None
        self.alignments: list[WindowAlignment] = []
        self.timings: dict[str, float] = {}  # seconds per stage since the last `take_timings`
        self._tail: list[tuple[int, list[np.ndarray], list[np.ndarray]]] = []

    @property
    def align_kind(self) -> str:
        return "metric-distance" if is_metric(self.kind) else "relative-disparity"

    def take_timings(self) -> dict[str, float]:
        """Seconds spent per stage (project, predict, align, merge) since the last call."""
        timings, self.timings = self.timings, {}
        return timings

    def _time(self, stage: str, started: float) -> float:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + now - started
        return now

    def store(self, frame: np.ndarray) -> np.ndarray:
        """A frame's views, float16 [V, h, w, 3]."""
        started = time.perf_counter()
        frame = np.asarray(frame, dtype=np.float32)
        height, width = frame.shape[:2]
        if self.size is None:
            self.size = (height, width)
            if self.views is None:
                size = self.view_size or native_view_size(self.estimator, self.preset, width, self.fov_deg)
                self.views = make_views(self.preset, height, width, fov_deg=self.fov_deg, view_size=size)
        elif self.size != (height, width):
            raise ValueError(f"frame of {width} x {height} in a stream of {self.size[1]} x {self.size[0]} frames")
        views = np.stack(project_to_views(frame, self.views)).astype(np.float16)
        self._time("project", started)
        return views

    def _predict(self, items: list[np.ndarray]) -> np.ndarray:
        """The window's outputs [T, V, h, w], views in groups that fit CLIP_BUDGET_BYTES."""
        frames, count, height, width = len(items), *items[0].shape[:3]
        group = max(1, CLIP_BUDGET_BYTES // (frames * height * width * 3 * 4))
        out = np.empty((frames, count, height, width), np.float32)
        for start in range(0, count, group):
            stop = min(start + group, count)
            images = np.stack([item[start:stop] for item in items]).astype(np.float32)
            rays = np.broadcast_to(np.stack([v.rays() for v in self.views[start:stop]]), images.shape)
            source = getattr(self.estimator, "name", type(self.estimator).__name__)
            out[:, start:stop] = check_clip_prediction(self.estimator.predict_clip(images, rays), images, source)
        return out

    def _disparities(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per frame and view, what is aligned (relative output, or inverse distance) and where it is valid."""
        if not is_metric(self.kind):
            return raw, np.isfinite(raw)
        if self.kind == "metric-depth":
            raw = np.stack([[planar_to_ray_distance(m, v) for m, v in zip(f, self.views, strict=True)] for f in raw])
        valid = np.isfinite(raw) & (raw > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(valid, 1.0 / raw, np.nan).astype(np.float32), valid

    def _run(self, k: int, items: list, first_in_segment: bool) -> list[tuple[int, tuple]]:
        started = time.perf_counter()
        raw = self._predict(items)
        started = self._time("predict", started)
        disparities, valid = self._disparities(raw)
        alignment = solve_window(disparities, self.views, self.align_kind, valid=valid)
        aligned = [alignment.apply(disparities[p], self.views) for p in range(WINDOW)]
        if not first_in_segment and not is_metric(self.kind):
            shared = range(ALIGN, OVERLAP)
            scale = fit_scale([m for p in shared for m in aligned[p]], [m for _, t, _ in self._tail for m in t],
                              [a & b for p, (_, _, tv) in zip(shared, self._tail, strict=True)
                               for a, b in zip(valid[p], tv, strict=True)])
            alignment = alignment.scaled(scale)
            aligned = [[m * np.float32(scale) for m in maps] for maps in aligned]
        self.alignments.append(alignment)
        start = STRIDE * k
        final = []
        if first_in_segment:
            first = 0 if k == 0 else OVERLAP
            final += [(start + p, aligned[p], list(valid[p])) for p in range(first, WINDOW - INTERP)]
        else:
            for (index, maps, masks), p, w in zip(self._tail, range(ALIGN, OVERLAP), blend_weights(), strict=True):
                mixed = [np.where(a & b, (1 - w) * m + w * n, np.where(a, m, n)).astype(np.float32)
                         for m, n, a, b in zip(maps, aligned[p], masks, valid[p], strict=True)]
                final.append((index, mixed, [a | b for a, b in zip(masks, valid[p], strict=True)]))
            final += [(start + p, aligned[p], list(valid[p])) for p in range(OVERLAP, WINDOW - INTERP)]
        self._tail = [(start + p, aligned[p], list(valid[p])) for p in range(WINDOW - INTERP, WINDOW)]
        self._time("align", started)
        return [(index, self._fuse(maps, masks)) for index, maps, masks in final]

    def _fuse(self, maps: list[np.ndarray], masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        started = time.perf_counter()
        height, width = self.size
        merged, weight = blend_to_equirect(maps, self.views, height, width, valid=masks)
        self._time("merge", started)
        return merged, weight > 0

    def _flush(self) -> list[tuple[int, tuple]]:
        tail, self._tail = self._tail, []
        return [(index, self._fuse(maps, masks)) for index, maps, masks in tail]
