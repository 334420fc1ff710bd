"""Ground-truth 360 renders for tests: Blender Cycles (CPU) images with exact distances.

This is the client side; it never imports `bpy`. Each render runs in a worker subprocess
(``python -m tests.groundtruth.worker``, see worker.py) that builds one of the scenes of
scenes.py (``sphere``, ``markers``, ``room``, ``room_moving``, ``outdoor``, ``room_walk``, ``outdoor_walk``,
``room_random``; their parameters are documented there) and renders it with an
equirectangular camera that follows DESIGN.md: mono, omni-directional stereo
(`render_stereo`) or VR180 stereo (`render_vr180`: two parallel eyes, each a half equirect).

Arrays (H = width // 2):

- ``rgb`` float32 [H, W, 3]: display-referred sRGB in 0..1 (Blender's Standard view
  transform), anti-aliased, ``samples`` per pixel, no denoising.
- ``distance`` float32 [H, W]: metres from the camera centre to the surface hit by the
  pixel-centre ray (Cycles' Z pass of a panoramic camera; for a stereo eye too it is
  measured from the camera centre, not from the eye); +inf where the ray hits nothing.
- ``object_index`` int32 [H, W]: the hit object's pass index (0 = nothing); find an object
  with ``.object(name).index`` or ``.mask(name)``.
- ``ray`` float32 [H, W, 3]: the unit direction of the rendered pixel-centre ray, as the
  renderer traced it (for convention checks).

``render_seconds`` is the worker's time for the frame's two renders (when it was made).
Renders are deterministic: geometry arrays bit-exact, rgb to float rounding (~1e-7).
RGB differs between Blender versions (texture nodes changed), geometry does not.

Results are cached on disk under ``<repo>/.cache/groundtruth/`` by a key over the
function, every parameter, the source of scenes.py and worker.py and the bpy version,
and memoised in-process; their arrays are read-only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ROOT = REPO_ROOT / ".cache" / "groundtruth"
_PACKAGE_DIR = Path(__file__).resolve().parent
_SOURCES = ("scenes.py", "worker.py")
# Scenes built by another module: its source keys their renders (and only theirs).
_SCENE_SOURCES = {"room_random": ("random_rooms.py",)}
_ERROR_TAIL_CHARS = 6000

_memo: dict[str, object] = {}
_worker_runs = 0


@dataclass(frozen=True)
class SceneObject:
    """An object of a rendered scene: name, pass index and world location at that frame."""

    name: str
    index: int
    location: tuple[float, float, float]


def _find_object(objects: tuple[SceneObject, ...], name: str) -> SceneObject:
    for obj in objects:
        if obj.name == name:
            return obj
    raise ValueError(f"no object named {name!r}; objects: {[o.name for o in objects]}")


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """One rendered equirect view (mono, or one eye of a stereo pair) of one frame."""

    scene: str
    frame: int
    rgb: np.ndarray
    distance: np.ndarray
    object_index: np.ndarray
    ray: np.ndarray
    objects: tuple[SceneObject, ...]
    render_seconds: float
    camera_location: np.ndarray = field(default_factory=lambda: np.zeros(3))
    camera_rotation: np.ndarray = field(default_factory=lambda: np.eye(3))

    @property
    def height(self) -> int:
        return self.distance.shape[0]

    @property
    def width(self) -> int:
        return self.distance.shape[1]

    def object(self, name: str) -> SceneObject:
        """The scene object called `name` (ValueError if there is none)."""
        return _find_object(self.objects, name)

    def mask(self, name: str) -> np.ndarray:
        """Bool [H, W]: the pixels whose centre ray hits object `name`."""
        return self.object_index == self.object(name).index


@dataclass(frozen=True, eq=False)
class StereoGroundTruth:
    """An omni-directional stereo (ODS) pair of one frame; arrays as in GroundTruth.

    Blender's spherical stereo with parallel convergence: each eye's rays have the pixel's
    direction and start ``ipd / 2`` to the side of the camera centre (reduced toward the
    poles between the ``pole_merge`` angles, degrees of elevation). The left eye sees
    near objects further right (larger column) than the right eye, as a human does.
    """

    scene: str
    frame: int
    ipd: float
    pole_merge: tuple[float, float] | None
    left_rgb: np.ndarray
    right_rgb: np.ndarray
    left_distance: np.ndarray
    right_distance: np.ndarray
    left_object_index: np.ndarray
    right_object_index: np.ndarray
    left_ray: np.ndarray
    right_ray: np.ndarray
    objects: tuple[SceneObject, ...]
    render_seconds: float

    def eye(self, which: Literal["left", "right"]) -> GroundTruth:
        """One eye as a GroundTruth (sharing the arrays)."""
        if which not in ("left", "right"):
            raise ValueError(f"eye must be 'left' or 'right', got {which!r}")
        return GroundTruth(
            scene=self.scene,
            frame=self.frame,
            rgb=getattr(self, f"{which}_rgb"),
            distance=getattr(self, f"{which}_distance"),
            object_index=getattr(self, f"{which}_object_index"),
            ray=getattr(self, f"{which}_ray"),
            objects=self.objects,
            render_seconds=self.render_seconds,
        )


def default_python() -> str:
    """The worker's interpreter: the repository's .venv if present, else this one."""
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


@functools.lru_cache(maxsize=8)
def _bpy_version(python: str) -> str:
    """The bpy version installed for `python`, read from its metadata (bpy is not loaded)."""
    result = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('bpy'))"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{python} has no bpy module: {result.stderr.strip()[-_ERROR_TAIL_CHARS:]}")
    return result.stdout.strip()


def worker_runs() -> int:
    """How many times this process has started a render worker (cache misses)."""
    return _worker_runs


def clear_memory_cache() -> None:
    """Forget the in-process results (the disk cache stays)."""
    _memo.clear()


def _check_common(scene: str, width: int, samples: int) -> None:
    if not isinstance(scene, str) or not re.fullmatch(r"[A-Za-z0-9_]+", scene):
        raise ValueError(f"scene must be a scene name (letters, digits, _), got {scene!r}")
    if width < 8 or width % 2:
        raise ValueError(f"width must be an even number >= 8, got {width}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")


def _render(function: str, request: dict, python: str | None) -> list[dict]:
    """Frames' arrays and infos of `request`, from the memo, the disk cache or the worker."""
    python = python or default_python()
    try:
        request_text = json.dumps(request, sort_keys=True)
    except TypeError as error:
        raise ValueError(f"scene parameters must be JSON values: {error}") from None
    sources = [(_PACKAGE_DIR / name).read_text() for name in _SOURCES]
    sources += [(_PACKAGE_DIR / name).read_text() for name in _SCENE_SOURCES.get(request["scene"], ())]
    key_text = json.dumps([function, request_text, sources, _bpy_version(python)])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:24]
    folder = CACHE_ROOT / f"{function}-{request['scene']}-{key}"
    if key in _memo:
        return _memo[key]
    if not folder.is_dir():
        with _render_lock(folder):  # a parallel test process wanting the same render waits for it
            if not folder.is_dir():
                _run_worker(request, folder, python)
    frames = [_load_frame(folder, frame) for frame in request["frames"]]
    _memo[key] = frames
    return frames


@contextlib.contextmanager
def _render_lock(folder: Path):
    """Hold an exclusive lock on `folder`'s render across processes (a lock file beside it)."""
    import fcntl

    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / f".{folder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_worker(request: dict, folder: Path, python: str) -> None:
    global _worker_runs
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=CACHE_ROOT))
    try:
        request_file = work / "request.json"
        request_file.write_text(json.dumps(request, indent=1, sort_keys=True))
        _worker_runs += 1
        result = subprocess.run(
            [python, "-m", "tests.groundtruth.worker", str(request_file), str(work)],
            cwd=REPO_ROOT, capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            output = result.stderr.strip() or result.stdout.strip()
            message = (
                f"ground-truth render of {request['scene']!r} failed (worker exit "
                f"{result.returncode}):\n{output[-_ERROR_TAIL_CHARS:]}"
            )
            if result.returncode == 2:
                raise ValueError(message)
            raise RuntimeError(message)
        try:
            os.rename(work, folder)
        except OSError:
            if not folder.is_dir():  # not a concurrent writer's finished result
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _load_frame(folder: Path, frame: int) -> dict:
    with np.load(folder / f"frame_{frame:04d}.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    for array in arrays.values():
        array.setflags(write=False)
    info = json.loads((folder / f"frame_{frame:04d}.json").read_text())
    objects = tuple(
        SceneObject(row["name"], int(row["index"]), tuple(float(v) for v in row["location"]))
        for row in info["objects"]
    )
    camera = info.get("camera", {"location": [0.0] * 3, "rotation": np.eye(3).tolist()})
    return {"arrays": arrays, "objects": objects, "seconds": float(info["render_seconds"]),
            "camera": (np.asarray(camera["location"], np.float64), np.asarray(camera["rotation"], np.float64))}


def _mono(scene: str, frame: int, loaded: dict) -> GroundTruth:
    arrays = loaded["arrays"]
    return GroundTruth(
        scene=scene, frame=frame, rgb=arrays["rgb"], distance=arrays["distance"],
        object_index=arrays["object_index"], ray=arrays["ray"], objects=loaded["objects"],
        render_seconds=loaded["seconds"], camera_location=loaded["camera"][0], camera_rotation=loaded["camera"][1],
    )


def render_mono(
    scene: str, width: int = 256, samples: int = 16, frame: int = 1, *,
    python: str | None = None, **params,
) -> GroundTruth:
    """Render `scene` (with scene `params`) as one width x width/2 equirect image."""
    _check_common(scene, width, samples)
    request = {"scene": scene, "params": params, "width": int(width), "samples": int(samples),
               "frames": [int(frame)], "stereo": None}
    (loaded,) = _render("mono", request, python)
    return _mono(scene, int(frame), loaded)


def render_sequence(
    scene: str, frames: int, width: int = 256, samples: int = 8, *,
    python: str | None = None, **params,
) -> list[GroundTruth]:
    """Render frames 1..`frames` of `scene` (animated objects; `*_walk` scenes move the camera too:
    each GroundTruth carries the frame's `camera_location` and `camera_rotation`)."""
    _check_common(scene, width, samples)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    numbers = list(range(1, int(frames) + 1))
    request = {"scene": scene, "params": params, "width": int(width), "samples": int(samples),
               "frames": numbers, "stereo": None}
    loaded = _render("sequence", request, python)
    return [_mono(scene, number, one) for number, one in zip(numbers, loaded, strict=True)]


def render_stereo(
    scene: str, width: int = 512, samples: int = 16, ipd: float = 0.064,
    pole_merge: tuple[float, float] | None = (60.0, 75.0), frame: int = 1, *,
    python: str | None = None, **params,
) -> StereoGroundTruth:
    """Render `scene` as Blender's omni-directional stereo pair of equirect images.

    `ipd` is the interocular distance in metres; `pole_merge` the (from, to) elevation in
    degrees over which the eyes' separation fades to zero toward the poles, or None for
    no pole merging.
    """
    _check_common(scene, width, samples)
    if not ipd > 0.0:
        raise ValueError(f"ipd must be positive metres, got {ipd}")
    if pole_merge is not None:
        start, end = (float(a) for a in pole_merge)
        if not 0.0 <= start < end <= 90.0:
            raise ValueError(f"pole_merge must be (from, to) degrees with 0 <= from < to <= 90, got {pole_merge}")
        pole_merge = (start, end)
    request = {"scene": scene, "params": params, "width": int(width), "samples": int(samples),
               "frames": [int(frame)],
               "stereo": {"ipd": float(ipd), "pole_merge": None if pole_merge is None else list(pole_merge)}}
    (loaded,) = _render("stereo", request, python)
    arrays = loaded["arrays"]
    return StereoGroundTruth(
        scene=scene, frame=int(frame), ipd=float(ipd), pole_merge=pole_merge,
        **{name: arrays[name] for name in (
            "left_rgb", "right_rgb", "left_distance", "right_distance",
            "left_object_index", "right_object_index", "left_ray", "right_ray")},
        objects=loaded["objects"], render_seconds=loaded["seconds"],
    )


@functools.lru_cache(maxsize=2)
def scene_pair(scene: str, eye_width: int = 2048) -> StereoGroundTruth:
    """The ODS render of a named layout at 2048 per eye, as the edge, guided and stereo tests score them:
    "room N" (scenes.py's ``room_random`` of seed N) or "outdoor N" (``outdoor`` of seed N). Other
    `eye_width`s: that render resized (the eyes bicubic, the left eye's truth nearest with pixel
    centres aligned, its rays bilinear and normalised)."""
    import dataclasses

    import cv2

    if eye_width != 2048:
        pair, size = scene_pair(scene), (eye_width, eye_width // 2)
        eyes = [np.clip(cv2.resize(np.asarray(eye, np.float32), size, interpolation=cv2.INTER_CUBIC), 0, 1)
                for eye in (pair.left_rgb, pair.right_rgb)]
        truth = {name: cv2.resize(np.asarray(getattr(pair, name), np.float32), size,
                                  interpolation=cv2.INTER_NEAREST_EXACT) for name in ("left_distance", "left_object_index")}
        rays = cv2.resize(np.asarray(pair.left_ray, np.float32), size, interpolation=cv2.INTER_LINEAR)
        return dataclasses.replace(pair, left_rgb=eyes[0], right_rgb=eyes[1], left_distance=truth["left_distance"],
                                   left_object_index=truth["left_object_index"].astype(np.int32),
                                   left_ray=rays / np.linalg.norm(rays, axis=-1, keepdims=True))
    kind, seed = scene.split()
    if kind == "room":
        return render_stereo("room_random", 2048, 8, ipd=0.064, pole_merge=(60.0, 75.0), seed=int(seed))
    if kind == "outdoor":
        return render_stereo("outdoor", width=2048, samples=8, seed=int(seed))
    raise ValueError(f"scene must be 'room N' or 'outdoor N', got {scene!r}")


@dataclass(frozen=True, eq=False)
class VR180GroundTruth:
    """A VR180 stereo pair: each eye a half equirect (W x W, 180 x 180 degrees, centre along +X;
    DESIGN.md's `vr180` layout), the two eyes `ipd` apart along Y (the left eye at +Y ipd/2,
    the right at -Y ipd/2: to the left and right of a viewer looking along +X).

    Blender's ordinary (not spherical) stereo camera: every pixel of an eye looks along its
    half-equirect direction from that eye's centre, and each eye's `distance` is measured from
    its own centre (for the left eye: the depth a VR180 estimate gives). Arrays as in
    StereoGroundTruth; `ray` is each eye's pixel-centre direction.
    """

    scene: str
    frame: int
    ipd: float
    left_rgb: np.ndarray
    right_rgb: np.ndarray
    left_distance: np.ndarray
    right_distance: np.ndarray
    left_object_index: np.ndarray
    right_object_index: np.ndarray
    left_ray: np.ndarray
    right_ray: np.ndarray
    objects: tuple[SceneObject, ...]
    render_seconds: float

    @property
    def left_eye_position(self) -> np.ndarray:
        return np.array([0.0, self.ipd / 2, 0.0])

    def side_by_side(self) -> np.ndarray:
        """float32 [W, 2W, 3]: the frame as a VR180 camera stores it (left eye on the left)."""
        return np.concatenate([self.left_rgb, self.right_rgb], axis=1)


def render_vr180(
    scene: str, width: int = 512, samples: int = 16, ipd: float = 0.064, frame: int = 1, *,
    python: str | None = None, **params,
) -> VR180GroundTruth:
    """Render `scene` as a VR180 pair: two parallel eyes `ipd` apart, each `width` x `width`."""
    _check_common(scene, width, samples)
    if not ipd > 0.0:
        raise ValueError(f"ipd must be positive metres, got {ipd}")
    request = {"scene": scene, "params": params, "width": int(width), "samples": int(samples),
               "frames": [int(frame)], "stereo": {"ipd": float(ipd), "vr180": True}}
    (loaded,) = _render("vr180", request, python)
    arrays = loaded["arrays"]
    return VR180GroundTruth(
        scene=scene, frame=int(frame), ipd=float(ipd),
        **{name: arrays[name] for name in (
            "left_rgb", "right_rgb", "left_distance", "right_distance",
            "left_object_index", "right_object_index", "left_ray", "right_ray")},
        objects=loaded["objects"], render_seconds=loaded["seconds"],
    )
