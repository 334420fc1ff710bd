"""The camera solve in the scene: the panoramic camera animated along the shot, the depth mesh in world space.

The engine records each frame's camera pose in the sidecar of a 360 video or sequence
(`estimators.pipeline.sidecar.read_camera_path`): rotation R and location c in the world
of its chain, the chain's first frame being the world frame, in the depth's own units
(shot units for relative models, metres for metric models and stereo). Here:

- `animate_camera` keyframes "Depth360 Camera" (equirectangular panoramic) at every
  solved frame of a chain: scene frame N gets frame N's pose. Blender's camera looks
  along its own -Z; the equirect image frame of DESIGN.md is the camera rotated
  (90, 0, -90) degrees (`depth_mesh.CAMERA_ROTATION`), so the camera's world rotation
  is R @ that rotation and its location c.
- `place_in_world` moves an object built around the camera of frame N (the depth mesh:
  vertices along frame N's rays at their distance) to where that camera was: rotation R,
  location c; its plate texture is held at frame N.
- `apply_camera_solve` does both from a plate and its depth (a mesh for the chosen
  frame, optionally a shadow catcher), all or nothing.

A virtual object placed in this world stays put in the composite while the camera
moves: the render of the animated camera has the Depth pass of the same units as the
plate's depth, which the compositor Z-combines frame by frame (`compositor_tree`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy
import mathutils
import numpy as np

from ..estimators.pipeline.sidecar import read_camera_path
from . import depth_mesh
from .image_data import CompositingInputError, resolve_footage
from .materials import PLATE_NODE
from .scene_transaction import scene_transaction


@dataclass(frozen=True)
class SolvedFrame:
    """One frame's pose from the sidecar: `rotation` [3, 3], `location` [3], its `chain` and `status`."""

    number: int
    rotation: np.ndarray
    location: np.ndarray
    chain: int
    status: str


def load_solve(depth_path) -> dict[int, SolvedFrame]:
    """Every solved frame recorded beside a depth file (the sidecars of its folder, chunks joined).

    CompositingInputError when the folder holds no camera solve (a still, or a run with
    --no-camera-solve) or a record is malformed.
    """
    footage = resolve_footage(depth_path)
    folder = footage.path.parent
    try:
        records = read_camera_path(folder)
    except ValueError as error:
        raise CompositingInputError(f"{footage.path}: {error}") from None
    solved = {}
    for number, record in records.items():
        try:
            rotation = np.asarray(record["rotation"], np.float64).reshape(3, 3)
            location = np.asarray(record["location"], np.float64).reshape(3)
            solved[number] = SolvedFrame(number, rotation, location, int(record.get("chain", 0)),
                                         str(record.get("status", "")))
        except (KeyError, TypeError, ValueError):
            raise CompositingInputError(f"{folder}: the camera solve's frame {number} is malformed") from None
    return solved


def chain_frames(solve: dict[int, SolvedFrame], frame: int) -> list[SolvedFrame]:
    """The solved frames of the chain `frame` belongs to, in order; CompositingInputError if unsolved."""
    if frame not in solve:
        known = f"{min(solve)}-{max(solve)}" if solve else "none"
        raise CompositingInputError(f"frame {frame} has no camera solve (solved frames: {known})")
    chain = solve[frame].chain
    return [solve[n] for n in sorted(solve) if solve[n].chain == chain]


def _world_quaternion(rotation: np.ndarray, camera: bool) -> mathutils.Quaternion:
    matrix = mathutils.Matrix(rotation.tolist())
    if camera:
        matrix = matrix @ mathutils.Euler(depth_mesh.CAMERA_ROTATION, "XYZ").to_matrix()
    return matrix.to_quaternion()


def animate_camera(frames: list[SolvedFrame], scene: bpy.types.Scene | None = None) -> bpy.types.Object:
    """Keyframe the scene's "Depth360 Camera" (made the scene camera) at each of `frames`; returns it.

    Linear keys, one per frame (scene frame N = solved frame N); quaternion rotation,
    kept on one hemisphere so the interpolation never takes the long way round.
    """
    scene = scene or bpy.context.scene
    camera = depth_mesh.ensure_panoramic_camera(scene, tuple(frames[0].location))
    camera.rotation_mode = "QUATERNION"
    if camera.animation_data is not None:
        camera.animation_data_clear()
    edit = bpy.context.preferences.edit
    interpolation = edit.keyframe_new_interpolation_type
    edit.keyframe_new_interpolation_type = "LINEAR"
    try:
        previous = None
        for solved in frames:
            quaternion = _world_quaternion(solved.rotation, camera=True)
            if previous is not None and previous.dot(quaternion) < 0:
                quaternion.negate()
            camera.location = tuple(solved.location)
            camera.rotation_quaternion = quaternion
            camera.keyframe_insert("location", frame=solved.number)
            camera.keyframe_insert("rotation_quaternion", frame=solved.number)
            previous = quaternion
    finally:
        edit.keyframe_new_interpolation_type = interpolation
    return camera


def place_in_world(obj: bpy.types.Object, solved: SolvedFrame) -> None:
    """Put an object built around frame N's camera (the depth mesh) where that camera was; hold its plate at N."""
    obj.rotation_mode = "QUATERNION"
    obj.rotation_quaternion = _world_quaternion(solved.rotation, camera=False)
    obj.location = tuple(solved.location)
    obj["depth360_solved_frame"] = solved.number
    for slot in obj.material_slots:
        material = slot.material
        if material is None or material.node_tree is None or PLATE_NODE not in material.node_tree.nodes:
            continue
        image_user = material.node_tree.nodes[PLATE_NODE].image_user
        image_user.use_auto_refresh = False
        image_user.frame_start = 1
        image_user.frame_duration = 1
        image_user.frame_offset = solved.number - 1


def plate_file(path) -> str:
    """A plate path as the builders take it: an image sequence given as its folder becomes its first file."""
    folder = Path(bpy.path.abspath(str(path))) if str(path).startswith("//") else Path(path)
    if not folder.is_dir():
        return str(path)
    from ..estimators.errors import BadInputError
    from ..estimators.media import video_io

    try:
        return str(video_io.probe(folder, sizes=False).files[0])
    except BadInputError as error:
        raise CompositingInputError(str(error)) from None


def apply_camera_solve(plate_path, depth_path, *, frame: int | None = None, build_mesh: bool = True,
                       shadow_catcher: bool = False, resolution: tuple[int, int] | None = None,
                       scene: bpy.types.Scene | None = None) -> tuple[bpy.types.Object, bpy.types.Object | None]:
    """Animate the camera from the solve beside `depth_path` and put frame `frame`'s depth mesh in world space.

    `plate_path`: the plate (a file, the first file of a sequence, or the sequence's
    folder). `frame`: the frame whose depth the mesh bakes (default: the scene's current frame);
    the camera is keyed at every solved frame of that frame's chain. Returns (camera,
    mesh or None). All or nothing: CompositingInputError (a ValueError) leaves the
    scene as it was.
    """
    scene = scene or bpy.context.scene
    frame = scene.frame_current if frame is None else int(frame)
    plate_path = plate_file(plate_path)
    solve = load_solve(depth_path)
    frames = chain_frames(solve, frame)
    with scene_transaction(scene):
        mesh = None
        if build_mesh:
            mesh = depth_mesh.build_mesh(plate_path, depth_path, frame=frame, resolution=resolution, scene=scene)
            place_in_world(mesh, solve[frame])
            mesh.name = f"Depth360 Mesh {frame}"
            mesh["depth360_plate_path"] = str(Path(plate_path))
            mesh["depth360_depth_path"] = str(Path(depth_path))
            if shadow_catcher:
                depth_mesh.shadow_catcher(mesh, scene)
        camera = animate_camera(frames, scene)
    return camera, mesh
