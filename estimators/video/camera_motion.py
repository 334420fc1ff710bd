"""The camera solve of 360 footage: each frame's rotation and position, from the frames alone.

`CameraSolver` is pushed the frames of a shot in order and gives back, for every frame,
a `CameraFrame`: its pose in the world of its *chain* (the world frame is the camera of
the chain's first frame: x along its image centre, z up its zenith, DESIGN.md), and the
sparse 3D structure it sees (pixels with their inverse distance), which the temporal
stabiliser fits each frame's depth to.

How (visual odometry on the sphere, robust to moving objects):

1. Corners (found on a contrast-equalised copy) are tracked from frame to frame on the
   grey frame at `width` pixels, refined against each track's template with an affine
   patch model (feature_tracks; wrap- and pole-aware), and turned into unit bearings
   (sphere_geometry).
2. A frame's rotation comes first, from the tracks it shares with the previous frame
   (two-point RANSAC on the bearings, which moving objects cannot outvote). Once the
   shot has 3D structure the full pose is a robust resection on the map points it sees.
3. Keyframes are taken when the rotation-compensated parallax since the last one
   exceeds `keyframe_parallax_deg` (or tracks thin out). The first keyframe pair with
   `init_parallax_deg` of parallax initialises the structure (eight-point RANSAC on
   bearings, essential matrix, triangulation); later keyframes triangulate new tracks
   and run a bundle adjustment over the last `window` keyframes (the two oldest held,
   which fixes the gauge), with Cauchy-robust angular residuals; points that disagree
   leave the map. Moving objects, newly seen areas and mismatches drop out this way.
4. **Units.** A relative solve has no scale of its own. It is fixed once per chain,
   when the structure is initialised: the `gauge_percentile` of the first points'
   inverse distance is put at 1 / `gauge_distance` (the pipeline passes twice `near`:
   the nearest of the first points at twice the near distance, room for what is
   nearer). These are the shot units of poses and of the stabilised depth; the bundle
   adjustment keeps the first baseline while the first keyframe is in its window, and
   holds its two oldest keyframes after that. Metric input converts them to metres per
   frame from the metric depth (video.temporal.metres_per_unit).
5. **Delay.** A frame's pose is given `look_ahead` frames after it was pushed (or at
   `finish()`), so the structure of the frames just after it helps; non-keyframes are
   re-solved on the map as it is then.
6. **Bad input.** A frame with too few corners (black, flat, blown out) is
   *featureless*: it keeps the previous pose and is skipped by the tracker. A frame that
   keeps too few of the previous frame's tracks, or whose kept tracks agree on no
   rotation, is a *cut*: a new chain starts there, with its own world frame and units.

Everything is deterministic (RANSAC draws from a generator seeded by the frame number),
so a run that starts at the shot's first frame gives the same poses for a frame whatever
frames it is asked to output, which is how chunks reproduce a whole-shot run
(pipeline: the solve reads from the first frame and `look_ahead` frames past the last).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from . import sphere_geometry as geometry
from .feature_tracks import FeatureTracker, TrackedFrame, TrackerSettings

STATUSES = ("start", "solved", "rotation-only", "featureless")
FAR_FACTOR = 1000.0  # far points start this many times the map's median distance away


@dataclass(frozen=True)
class SolveSettings:
    """Knobs of the camera solve (see the module docstring); angles in degrees."""

    width: int = 1024
    look_ahead: int = 12
    window: int = 8
    keyframe_parallax_deg: float = 1.0
    init_parallax_deg: float = 2.0
    min_parallax_deg: float = 1.0
    min_points: int = 30
    noise_px: float = 0.5
    rotation_threshold_deg: float = 3.0
    cut_fraction: float = 0.2
    min_corners: int = 10
    gauge_percentile: float = 99.0
    gauge_distance: float = 1.0
    tracker: TrackerSettings = field(default_factory=TrackerSettings)

    def __post_init__(self) -> None:
        if self.width < 64:
            raise ValueError(f"the solve's working width must be at least 64, got {self.width}")
        if self.look_ahead < 0 or self.window < 3:
            raise ValueError("look_ahead must be >= 0 and window >= 3")
        if not self.gauge_distance > 0:
            raise ValueError(f"gauge_distance must be positive, got {self.gauge_distance}")

    def recorded(self) -> dict:
        """The settings as plain data (recorded in the sidecar, compared on resume)."""
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class CameraFrame:
    """One frame's camera: pose in its chain's world, status, and the structure it sees.

    `rotation` [3, 3] (an image direction d points along rotation @ d in the world),
    `location` [3] (shot units). `chain`: 0, 1, ... (a new one at each cut), whose world
    frame is the camera of frame `chain_start`. `status`: "start" (a chain's first
    frame), "solved" (rotation and position from the structure), "rotation-only" (no
    structure yet: position kept), "featureless" (pose kept). `points_xy` [N, 2]:
    continuous pixel coordinates (full frame, pixel centres at c + 0.5) of map points
    seen in the frame, `points_inverse_distance` [N] their inverse distance (1/shot
    unit) from the camera, `points_weight` [N].
    """

    number: int
    chain: int
    chain_start: int
    rotation: np.ndarray
    location: np.ndarray
    status: str
    points_xy: np.ndarray
    points_inverse_distance: np.ndarray
    points_weight: np.ndarray
    tracks: int = 0

    @property
    def has_structure(self) -> bool:
        return len(self.points_inverse_distance) > 0

    def record(self) -> dict:
        """The frame's pose as plain data (the sidecar's `camera.frames` entries)."""
        return {"chain": self.chain, "rotation": np.round(self.rotation, 9).tolist(),
                "location": np.round(self.location, 9).tolist(), "status": self.status,
                "points": int(len(self.points_inverse_distance)), "tracks": int(self.tracks)}


@dataclass
class _FrameRecord:
    number: int
    ids: np.ndarray
    bearings: np.ndarray
    xy: np.ndarray
    rotation: np.ndarray
    centre: np.ndarray
    status: str
    keyframe: bool = False


def prepare_grey(rgb: np.ndarray, width: int) -> np.ndarray:
    """The uint8 grey frame, at most `width` pixels wide (area-averaged)."""
    import cv2

    rgb = np.asarray(rgb)
    height_full, width_full = rgb.shape[:2]
    if width_full > width:
        rgb = cv2.resize(rgb, (width, max(2, round(height_full * width / width_full))), interpolation=cv2.INTER_AREA)
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.asarray(rgb, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def tracking_images(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image to track on, image to find corners in) of a grey frame.

    Tracking runs on the frame slightly blurred (Gaussian, 1 px), which keeps the
    optical flow's sub-pixel estimates free of the bias toward whole pixels. Corners are
    looked for after local contrast equalisation (CLAHE), so weak texture (grass,
    floors) gets corners too; the flow is not computed on the equalised frame, whose
    brightness changes as content moves across the equalisation's tiles (that biased
    the flow by 3% of the motion on the project's renders).
    """
    import cv2

    corners = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 8)).apply(grey)
    return cv2.GaussianBlur(grey, (0, 0), 1.0), corners


def is_featureless(grey: np.ndarray, min_corners: int) -> bool:
    """True for a frame with too little structure to track: black, flat, blown out, or noise only.

    Judged on the frame blurred (so sensor noise does not count as texture): its
    contrast (standard deviation under 3 grey levels), and whether it has `min_corners`
    distinct corners.
    """
    import cv2

    blurred = cv2.GaussianBlur(grey, (0, 0), 2.0)
    if float(blurred.std()) < 3.0:
        return True
    corners = cv2.goodFeaturesToTrack(blurred, maxCorners=min_corners, qualityLevel=0.01,
                                      minDistance=max(2.0, grey.shape[1] / 50.0), blockSize=5)
    return corners is None or len(corners) < min_corners


def _subtended(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles (rad) subtended at `points` [N, 3] by camera centres `a` ([N, 3] or [3]) and `b`."""
    ra, rb = points - a, points - b
    cos = np.einsum("ij,ij->i", ra, rb) / np.maximum(np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1), 1e-300)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def _common(a: _FrameRecord, b: _FrameRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, index into a, index into b) of the tracks two frames share."""
    return np.intersect1d(a.ids, b.ids, assume_unique=True, return_indices=True)


def _parallax_deg(a: _FrameRecord, b: _FrameRecord, ia: np.ndarray, ib: np.ndarray) -> float:
    """Median angle (degrees) between shared tracks' world directions: parallax once rotation is removed."""
    if not len(ia):
        return 0.0
    da, db = a.bearings[ia] @ a.rotation.T, b.bearings[ib] @ b.rotation.T
    return float(np.degrees(np.median(np.arccos(np.clip(np.einsum("ij,ij->i", da, db), -1.0, 1.0)))))


class CameraSolver:
    """Push the frames of a shot in order; get each frame's CameraFrame (module docstring)."""

    def __init__(self, settings: SolveSettings | None = None):
        self.settings = settings or SolveSettings()
        self._tracker = FeatureTracker(self.settings.tracker)
        self._pending: deque[int] = deque()
        self._frames: dict[int, _FrameRecord] = {}
        self._chain, self._chain_start, self._world_set = 0, None, False
        self._keyframes: list[int] = []
        self._map: dict[int, np.ndarray] = {}
        self._origin: dict[int, np.ndarray] = {}  # camera centre a map point was first seen from
        self._reach: dict[int, float] = {}  # the largest angle (rad) its observations subtend at it
        self._initialised = False
        self._init_pair = (0, 0)  # the keyframes that initialised the structure
        self._last: int | None = None
        self._pushed: int | None = None
        self._last_emitted: CameraFrame | None = None
        self._scale = 1.0  # full-frame pixels per working pixel
        self._work = (0, 0)
        self.cuts: list[int] = []
        self.featureless: list[int] = []

    @property
    def sigma(self) -> float:
        """The angular noise of a track (radians): `noise_px` working pixels."""
        return self.settings.noise_px * 2.0 * np.pi / self._work[0]

    def push(self, number: int, rgb: np.ndarray) -> list[CameraFrame]:
        """Add frame `number` (RGB [H, W, 3], 0..1 floats or uint8); the frames whose pose is now final."""
        if self._pushed is not None and number <= self._pushed:
            raise ValueError(f"frames must be pushed in increasing order; got {number} after {self._pushed}")
        self._pushed = number
        grey = prepare_grey(rgb, self.settings.width)
        self._scale = rgb.shape[1] / grey.shape[1]
        self._work = (grey.shape[1], grey.shape[0])
        if self._chain_start is None:
            self._chain_start = number
        emitted: list[CameraFrame] = []
        if is_featureless(grey, self.settings.min_corners):
            self.featureless.append(number)
            self._frames[number] = _FrameRecord(number, np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 2)),
                                                np.eye(3), np.zeros(3), "featureless")
        else:
            tracked = self._tracker.track(*tracking_images(grey))
            rng = np.random.default_rng(number)
            if not self._world_set:
                self._start_chain(number, tracked)
            else:
                rotation = self._rotation_from_last(tracked, rng)
                if rotation is None:
                    emitted += self.finish()
                    self._new_chain(number, grey)
                else:
                    self._add_frame(number, tracked, rotation, rng)
        self._pending.append(number)
        while self._pending and self._pending[0] <= number - self.settings.look_ahead:
            emitted.append(self._emit(self._pending.popleft()))
        return emitted

    def finish(self) -> list[CameraFrame]:
        """Every frame not given yet (the end of the shot, or a cut)."""
        emitted = []
        while self._pending:
            emitted.append(self._emit(self._pending.popleft()))
        return emitted

    def _record(self, number: int, tracked: TrackedFrame, rotation, centre, status: str) -> _FrameRecord:
        bearings = geometry.equirect_bearings(tracked.xy[:, 0], tracked.xy[:, 1], *self._work)
        record = _FrameRecord(number, tracked.ids, bearings, tracked.xy, np.asarray(rotation, float),
                              np.asarray(centre, float), status)
        self._frames[number] = record
        self._last = number
        return record

    def _start_chain(self, number: int, tracked: TrackedFrame) -> None:
        record = self._record(number, tracked, np.eye(3), np.zeros(3), "start")
        record.keyframe = True
        self._keyframes = [number]
        self._world_set = True

    def _new_chain(self, number: int, grey: np.ndarray) -> None:
        """A cut at `number`: forget the structure and tracks, start a chain whose world is this frame."""
        self.cuts.append(number)
        self._chain += 1
        self._chain_start = number
        self._frames = {}
        self._map, self._origin, self._reach = {}, {}, {}
        self._initialised = False
        self._tracker.reset()
        self._start_chain(number, self._tracker.track(*tracking_images(grey)))

    def _rotation_from_last(self, tracked: TrackedFrame, rng) -> np.ndarray | None:
        """The rotation since the last tracked frame (Q: this frame's directions to that frame's), None at a cut."""
        last = self._frames[self._last]
        settings = self.settings
        if tracked.followed < settings.cut_fraction * max(tracked.previous, 1):
            return None
        ids, i_last, i_new = np.intersect1d(last.ids, tracked.ids, assume_unique=True, return_indices=True)
        bearings = geometry.equirect_bearings(tracked.xy[i_new, 0], tracked.xy[i_new, 1], *self._work)
        q, inliers = geometry.ransac_rotation(last.bearings[i_last], bearings,
                                              np.radians(settings.rotation_threshold_deg), rng)
        if inliers.sum() < max(settings.min_corners, settings.cut_fraction * len(ids)):
            return None
        return q

    def _visible(self, record: _FrameRecord) -> tuple[np.ndarray, np.ndarray]:
        """(index into the record's tracks, world points) of the map points a frame sees."""
        index = np.array([i for i, track in enumerate(record.ids) if int(track) in self._map], dtype=np.int64)
        points = np.array([self._map[int(record.ids[i])] for i in index]).reshape(-1, 3)
        return index, points

    def _resect(self, record: _FrameRecord) -> bool:
        """Solve a frame's full pose on the map points it sees (from its current pose); False if too few."""
        index, points = self._visible(record)
        if len(index) < self.settings.min_points:
            return False
        record.rotation, record.centre = geometry.refine_pose(record.rotation, record.centre, points,
                                                              record.bearings[index], self.sigma)
        record.status = "solved"
        return True

    def _add_frame(self, number: int, tracked: TrackedFrame, rotation: np.ndarray, rng) -> None:
        last = self._frames[self._last]
        record = self._record(number, tracked, last.rotation @ rotation, last.centre, "rotation-only")
        if self._initialised:
            self._resect(record)
        keyframe = self._frames[self._keyframes[-1]]
        ids, i_key, i_new = _common(keyframe, record)
        if (_parallax_deg(keyframe, record, i_key, i_new) >= self.settings.keyframe_parallax_deg
                or len(ids) < 0.5 * len(keyframe.ids)):
            record.keyframe = True
            self._keyframes.append(number)
            if not self._initialised:
                self._initialise(record, rng)
            else:
                self._triangulate(record)
                self._bundle()
            self._forget()

    def _initialise(self, record: _FrameRecord, rng) -> None:
        """Two-view structure from the oldest keyframe with enough shared tracks and parallax, if any."""
        settings = self.settings
        for key in self._keyframes[:-1]:
            first = self._frames[key]
            ids, i_first, i_new = _common(first, record)
            if len(ids) < 2 * settings.min_points:
                continue
            if _parallax_deg(first, record, i_first, i_new) < settings.init_parallax_deg:
                return
            b1, b2 = first.bearings[i_first], record.bearings[i_new]
            essential, inliers = geometry.ransac_essential(b1, b2, 3.0 * self.sigma, rng)
            if inliers.sum() < settings.min_points:
                return
            q, tau = geometry.decompose_essential(essential, b1[inliers], b2[inliers])
            record.rotation = first.rotation @ q
            record.centre = first.centre + first.rotation @ tau
            for number in self._keyframes:
                self._frames[number].keyframe = number in (key, record.number)
            self._keyframes = [key, record.number]
            self._triangulate(record, candidates=ids[inliers])
            if len(self._map) < settings.min_points:
                self._map, self._origin, self._reach = {}, {}, {}
                return
            self._initialised = True
            self._init_pair = (key, record.number)
            self._bundle()
            self._set_gauge(record)
            record.status = "solved"
            return

    def _set_gauge(self, record: _FrameRecord) -> None:
        """Scale the chain's world so that the first points' `gauge_percentile` inverse distance is 1/gauge_distance."""
        index, points = self._visible(record)
        if not len(points):
            points = np.array(list(self._map.values()))
        inverse = 1.0 / np.linalg.norm(points - record.centre, axis=1)
        factor = float(np.percentile(inverse, self.settings.gauge_percentile)) * self.settings.gauge_distance
        for frame in self._frames.values():
            frame.centre = frame.centre * factor
        self._map = {track: point * factor for track, point in self._map.items()}
        self._origin = {track: point * factor for track, point in self._origin.items()}

    def _observations(self, numbers: list[int], tracks: set[int]):
        """(pose slot, track id, bearing) of every observation of `tracks` in the keyframes `numbers`."""
        slots, ids, bearings = [], [], []
        for slot, number in enumerate(numbers):
            record = self._frames[number]
            seen = np.array([int(t) in tracks for t in record.ids], dtype=bool)
            slots.append(np.full(int(seen.sum()), slot))
            ids.append(record.ids[seen])
            bearings.append(record.bearings[seen])
        return np.concatenate(slots), np.concatenate(ids), np.concatenate(bearings)

    def _triangulate(self, record: _FrameRecord, candidates: np.ndarray | None = None) -> None:
        """Add to the map the new tracks of a keyframe that agree with the window's keyframes.

        A track seen with `keyframe_parallax_deg` of parallax is triangulated; one with
        less enters as a far point (`_far_points`), if it agrees with being that far.
        """
        window = self._keyframes[-self.settings.window:]
        tracks = record.ids if candidates is None else candidates
        tracks = {int(t) for t in tracks if int(t) not in self._map}
        if not tracks:
            return
        slots, ids, bearings = self._observations(window, tracks)
        rotations = np.stack([self._frames[n].rotation for n in window])[slots]
        centres = np.stack([self._frames[n].centre for n in window])[slots]
        unique, point_index = np.unique(ids, return_inverse=True)
        directions = np.einsum("nij,nj->ni", rotations, bearings)
        points, _ = geometry.triangulate(centres, directions, point_index, len(unique))
        first = np.full(len(unique), len(slots))
        np.minimum.at(first, point_index, np.arange(len(slots)))
        origins = centres[first]
        angle = _subtended(points, origins, record.centre)
        near = angle >= np.radians(self.settings.min_parallax_deg)
        points = np.where(near[:, None], points, self._far_points(record, directions, point_index, points[near]))
        residuals, v = geometry.angular_residuals(rotations, centres, points[point_index], bearings,
                                                  geometry.tangent_bases(bearings))
        bad = (np.linalg.norm(residuals, axis=1) > 3.0 * self.sigma) | (np.einsum("ij,ij->i", v, bearings) <= 0)
        agree = np.bincount(point_index, weights=bad, minlength=len(unique)) == 0
        for track, point, origin, reach in zip(unique[agree], points[agree], origins[agree], angle[agree], strict=True):
            self._map[int(track)] = point
            self._origin[int(track)] = origin
            self._reach[int(track)] = float(reach)

    def _far_points(self, record: _FrameRecord, directions: np.ndarray, point_index: np.ndarray,
                    near_points: np.ndarray) -> np.ndarray:
        """Points `FAR_FACTOR` times the map's median distance along each track's mean world direction.

        Far points (the horizon, distant buildings) pin the rotation down where near
        points alone let it trade off against the translation (a camera walking under
        an empty sky); bundle adjustment brings them nearer if their parallax grows.
        The depth fit ignores them until they are seen with parallax (`_emit`).
        """
        known = np.array(list(self._map.values())) if self._map else near_points
        if not len(known):
            return np.full((point_index.max() + 1, 3), np.nan)
        scale = float(np.median(np.linalg.norm(known - record.centre, axis=1)))
        summed = np.zeros((point_index.max() + 1, 3))
        np.add.at(summed, point_index, directions)
        return record.centre + FAR_FACTOR * scale * summed / np.linalg.norm(summed, axis=1, keepdims=True)

    def _bundle(self) -> None:
        """Bundle adjustment over the window's keyframes; disagreeing points leave the map.

        The gauge: the two oldest keyframes of the window are held, except while the
        structure's first keyframe is still in the window: then only that one is held,
        and the result is rescaled to keep the first baseline (the chain's units), so
        the first keyframes profit from the longer baselines that follow.
        """
        window = self._keyframes[-self.settings.window:]
        first, second = self._init_pair
        fix = 1 if window[0] == first and second in window else 2
        baseline = np.linalg.norm(self._frames[second].centre - self._frames[first].centre) if fix == 1 else 0.0
        slots, ids, bearings = self._observations(window, set(self._map))
        tracks, point_index, counts = np.unique(ids, return_inverse=True, return_counts=True)
        if not len(tracks):
            return
        problem = geometry.BundleProblem(
            np.stack([self._frames[n].rotation for n in window]), np.stack([self._frames[n].centre for n in window]),
            np.arange(len(window)) < min(fix, len(window)), np.array([self._map[int(t)] for t in tracks]),
            slots, point_index, bearings)
        problem = geometry.bundle_adjust(problem, self.sigma)
        if fix == 1:
            origin = problem.centres[0].copy()
            factor = baseline / max(float(np.linalg.norm(problem.centres[window.index(second)] - origin)), 1e-300)
            problem.centres = origin + factor * (problem.centres - origin)
            problem.points = origin + factor * (problem.points - origin)
        for slot, number in enumerate(window):
            self._frames[number].rotation = problem.rotations[slot]
            self._frames[number].centre = problem.centres[slot]
        residuals, _ = problem.residuals()
        bad = np.bincount(point_index, weights=np.linalg.norm(residuals, axis=1) > 4.0 * self.sigma,
                          minlength=len(tracks)) > 0
        origins = np.array([self._origin[int(t)] for t in tracks])
        reach = np.zeros(len(tracks))
        np.maximum.at(reach, point_index, _subtended(problem.points[point_index], origins[point_index],
                                                     problem.centres[slots]))
        for track, point, outlier, seen, angle in zip(tracks, problem.points, bad, counts, reach, strict=True):
            if outlier:
                del self._map[int(track)]
            elif seen >= 2:
                self._map[int(track)] = point
                self._reach[int(track)] = max(self._reach.get(int(track), 0.0), float(angle))

    def _forget(self) -> None:
        """Drop what no later frame needs: records outside the window and the pending frames, unseen points."""
        self._keyframes = self._keyframes[-self.settings.window:]
        keep = set(self._keyframes) | set(self._pending) | {self._last}
        self._frames = {n: r for n, r in self._frames.items() if n in keep}
        seen = set()
        for record in self._frames.values():
            seen.update(int(t) for t in record.ids)
        self._map = {t: p for t, p in self._map.items() if t in seen}
        self._origin = {t: p for t, p in self._origin.items() if t in self._map}
        self._reach = {t: p for t, p in self._reach.items() if t in self._map}

    def _emit(self, number: int) -> CameraFrame:
        record = self._frames[number]
        if record.status == "featureless":
            previous = self._last_emitted
            if previous is not None:
                record.rotation, record.centre = previous.rotation, previous.location
        elif self._initialised and not record.keyframe:
            self._resect(record)
        index, points = self._visible(record) if record.status != "featureless" else (np.zeros(0, int), np.zeros((0, 3)))
        if len(index):
            residuals, v = geometry.angular_residuals(
                np.broadcast_to(record.rotation, (len(index), 3, 3)), np.broadcast_to(record.centre, (len(index), 3)),
                points, record.bearings[index], geometry.tangent_bases(record.bearings[index]))
            agree = (np.linalg.norm(residuals, axis=1) < 3.0 * self.sigma) & (np.einsum("ij,ij->i", v, record.bearings[index]) > 0)
            reach = np.array([self._reach[int(record.ids[i])] for i in index])
            agree &= reach >= np.radians(self.settings.min_parallax_deg)
            index, v = index[agree], v[agree]
        inverse = 1.0 / np.linalg.norm(v, axis=1) if len(index) else np.zeros(0)
        frame = CameraFrame(
            number=number, chain=self._chain, chain_start=self._chain_start, rotation=record.rotation.copy(),
            location=record.centre.copy(), status=record.status, points_xy=record.xy[index] * self._scale,
            points_inverse_distance=inverse, points_weight=np.degrees(reach[agree]) if len(index) else np.zeros(0), tracks=len(record.ids))
        if not record.keyframe and number != self._last:
            self._frames.pop(number, None)
        self._last_emitted = frame
        return frame
