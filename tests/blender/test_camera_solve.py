"""Apply Camera Solve in real Blender (issue 13, point 4): the camera animated from the solve, the depth
mesh of a frame in world space, a virtual object that stays put while the camera moves.

The shot is the ground-truth `room_walk` (512 x 256, 24 frames: the camera walks 1.3 m
and turns 30 degrees while a ball rolls), run through the engine's pipeline with the
per-frame oracle (tests/moving_camera.py, in the repository's .venv: this Python may not
have the engine's dependencies). The solve's world is frame 1's camera, in shot units;
the scene's scale is fixed on frame 1 (the ratio of its estimated to its true distance),
which is what a user does with one known distance.
"""

from __future__ import annotations

import json

import bpy
import mathutils
import numpy as np
import pytest

from tests import groundtruth
from tests.blender.compositing_helpers import (
    add_sphere,
    builders,
    configure_render,
    equirect,
    ray_sphere_distance,
    render_composite,
    reset_scene,
    scene_state,
    write_depth,
    write_plate,
)
from tests.moving_camera import solved_shot_in_subprocess

WIDTH, FRAMES = 512, 24
MAGENTA = (1.0, 0.0, 1.0)
# A virtual ball 3 m out along the first frame's +X, partly behind the real box_x as the camera walks.
BALL_CENTRE, BALL_RADIUS = np.array([3.0, 0.1, -0.45]), 0.55
CAMERA_ROTATION = (np.pi / 2, 0.0, -np.pi / 2)


@pytest.fixture
def clean_scene(installed_extension):
    return reset_scene()


@pytest.fixture(scope="module")
def walk():
    """(truths, folder of the solved shot: frames/shot/shot_NNNN.png and out/shot/ depth + sidecar)."""
    truths = groundtruth.render_sequence("room_walk", FRAMES, WIDTH, 4)
    return truths, solved_shot_in_subprocess("room_walk", WIDTH, FRAMES)


def _paths(folder):
    return folder / "frames" / "shot" / "shot_0001.png", folder / "out" / "shot" / "distance_00001.exr"


def _read_exr(path):
    image = bpy.data.images.load(str(path), check_existing=False)
    image.colorspace_settings.name = "Non-Color"
    width, height = image.size
    pixels = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(height, width, -1)[::-1, :, 0].copy()


def _units_per_metre(folder, truth) -> float:
    """The shot's scale fixed on frame 1: estimated over true distance (median, where the mask is 1)."""
    distance = _read_exr(folder / "out" / "shot" / "distance_00001.exr")
    mask = _read_exr(folder / "out" / "shot" / "mask_00001.exr") > 0.5
    return float(np.median(distance[mask] / truth.distance[mask]))


def _to_solve(points, first, scale):
    """World points (metres) in the solve's world: frame 1's camera, shot units."""
    return scale * (np.asarray(points) - first.camera_location) @ first.camera_rotation


@pytest.mark.slow
def test_virtual_object_stays_put_in_the_composite_while_the_camera_moves(clean_scene, tmp_path, walk):
    truths, folder = walk
    plate, depth = _paths(folder)
    scene = bpy.context.scene
    builders("compositor_tree").build_compositor(plate, depth, scene=scene)
    assert bpy.ops.depth360.apply_camera_solve(plate_path=str(plate), depth_path=str(depth), frame=1,
                                               build_mesh=False) == {"FINISHED"}
    scale = _units_per_metre(folder, truths[0])
    add_sphere(scene, "virtual", tuple(_to_solve(BALL_CENTRE, truths[0], scale)), scale * BALL_RADIUS, MAGENTA,
               emission=True)
    configure_render(scene, samples=4, crisp=True)  # pixel-centre rays, as the true camera's test
    rays = equirect().ray_directions(WIDTH // 2, WIDTH).astype(np.float64)
    ious, offsets, hidden = [], [], []
    for number, truth in enumerate(truths, start=1):
        scene.frame_set(number)
        composite = render_composite(scene, tmp_path / f"composite_{number}.png")
        hit = ray_sphere_distance(rays @ truth.camera_rotation.T, BALL_CENTRE - truth.camera_location, BALL_RADIUS)
        expected = hit < truth.distance  # where the true camera sees the ball in front of the real scene
        towards = np.sum((composite - truth.rgb) * (np.asarray(MAGENTA) - truth.rgb), -1)
        seen = towards > 0.5 * np.sum((np.asarray(MAGENTA) - truth.rgb) ** 2, -1)
        if expected.sum() < 100:  # the ball (nearly) hidden behind the box: few pixels differ at most
            assert (seen ^ expected).sum() <= 12, number
            hidden.append(number)
            continue
        ious.append((seen & expected).sum() / (seen | expected).sum())
        offsets.append(np.hypot(*(np.mean(np.nonzero(seen), axis=1) - np.mean(np.nonzero(expected), axis=1))))
    print(f"IoU min {min(ious):.3f} (mean {np.mean(ious):.3f}), centroid offset max {max(offsets):.2f} px "
          f"over {len(ious)} frames (ball nearly hidden on frames {hidden}), Blender {bpy.app.version_string}")
    assert min(ious) >= 0.95
    assert max(offsets) <= 2.0


@pytest.mark.slow
def test_depth_mesh_of_a_frame_lands_on_the_true_surfaces(clean_scene, walk):
    truths, folder = walk
    plate, depth = _paths(folder)
    scene = bpy.context.scene
    scene.frame_set(12)
    assert bpy.ops.depth360.apply_camera_solve(plate_path=str(plate), depth_path=str(depth)) == {"FINISHED"}
    mesh = bpy.data.objects["Depth360 Mesh 12"]
    assert mesh["depth360_solved_frame"] == 12 and scene.camera.animation_data.action.frame_range[:] == (1, 24)
    image_user = mesh.material_slots[0].material.node_tree.nodes["Depth360 Plate"].image_user
    assert (image_user.frame_offset, image_user.frame_duration) == (11, 1)  # the plate held at frame 12
    matrix = np.array(mesh.matrix_world)
    points = np.array([v.co for v in mesh.data.vertices]) @ matrix[:3, :3].T + matrix[:3, 3]
    scale = _units_per_metre(folder, truths[0])
    first = truths[0]
    world = first.camera_location + (points / scale) @ first.camera_rotation.T  # back to metres, true world
    for number in (1, 24):  # seen from other frames' true cameras, the mesh lies on the true surfaces
        truth = truths[number - 1]
        local = (world - truth.camera_location) @ truth.camera_rotation
        rows, cols = equirect().direction_to_pixel(local, WIDTH // 2, WIDTH)
        rows = np.clip(np.round(rows).astype(int), 0, WIDTH // 2 - 1)
        cols = np.mod(np.round(cols).astype(int), WIDTH)
        error = np.abs(np.linalg.norm(local, axis=1) / truth.distance[rows, cols] - 1.0)
        print(f"frame 12 mesh seen from frame {number}: median distance error {100 * np.median(error):.2f}%")
        assert np.median(error) <= 0.02


def _fake_solve(folder, poses):
    """A one-chain-per-cut sidecar and tiny plate and depth sequences for `poses` {frame: (R, c, chain)}."""
    folder.mkdir(parents=True)
    for number in poses:
        write_plate(folder / f"plate_{number:05d}.png", np.full((16, 32, 3), 0.5, np.float32))
        write_depth(folder / f"distance_{number:05d}.exr", np.full((16, 32), 2.0, np.float32))
    frames = {str(n): {"chain": chain, "rotation": r.tolist(), "location": list(c), "status": "solved"}
              for n, (r, c, chain) in poses.items()}
    (folder / f"{folder.name}.json").write_text(json.dumps({"camera": {"frames": frames}}))
    return folder / "plate_00001.png", folder / "distance_00001.exr"


def _yaw(degrees):
    angle = np.radians(degrees)
    return np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])


def test_camera_keys_follow_the_solve_within_the_chosen_frames_chain(clean_scene, tmp_path):
    poses = {1: (np.eye(3), (0.0, 0.0, 0.0), 0), 2: (_yaw(10), (0.5, 0.0, 0.1), 0), 3: (_yaw(20), (1.0, 0.2, 0.1), 0),
             4: (np.eye(3), (0.0, 0.0, 0.0), 1), 5: (_yaw(-5), (0.0, 1.0, 0.0), 1)}
    plate, depth = _fake_solve(tmp_path / "shot", poses)
    scene = bpy.context.scene
    camera, mesh = builders("camera_solve").apply_camera_solve(plate, depth, frame=2, scene=scene)
    assert scene.camera == camera and camera.data.type == "PANO"
    assert tuple(camera.animation_data.action.frame_range) == (1, 3)
    base = mathutils.Euler(CAMERA_ROTATION, "XYZ").to_matrix()
    for number in (1, 2, 3):
        rotation, location, _ = poses[number]
        scene.frame_set(number)
        matrix = camera.matrix_world
        np.testing.assert_allclose(np.array(matrix.to_3x3()), rotation @ np.array(base), atol=1e-5)
        np.testing.assert_allclose(tuple(matrix.translation), location, atol=1e-5)
    # the mesh of frame 2 (vertices along frame 2's rays, 2 units out) sits where frame 2's camera was
    np.testing.assert_allclose(np.array(mesh.matrix_world.to_3x3()), _yaw(10), atol=1e-5)
    np.testing.assert_allclose(tuple(mesh.matrix_world.translation), (0.5, 0.0, 0.1), atol=1e-5)
    local = np.array([v.co for v in mesh.data.vertices])
    np.testing.assert_allclose(np.linalg.norm(local, axis=1), 2.0, rtol=1e-4)
    camera, _ = builders("camera_solve").apply_camera_solve(plate, depth, frame=5, build_mesh=False, scene=scene)
    assert tuple(camera.animation_data.action.frame_range) == (4, 5)  # the chain after the cut


def test_bad_input_leaves_the_scene_as_it_was(clean_scene, tmp_path):
    scene = bpy.context.scene
    plate = write_plate(tmp_path / "plate.png", np.full((16, 32, 3), 0.5, np.float32))
    depth = write_depth(tmp_path / "depth.exr", np.full((16, 32), 2.0, np.float32))
    before = scene_state(scene)
    with pytest.raises(RuntimeError, match="no sidecar .* holds a camera solve"):
        bpy.ops.depth360.apply_camera_solve(plate_path=str(plate), depth_path=str(depth))
    assert scene_state(scene) == before
    plate, depth = _fake_solve(tmp_path / "shot", {1: (np.eye(3), (0.0, 0.0, 0.0), 0), 2: (_yaw(5), (0.1, 0, 0), 0)})
    before = scene_state(scene)
    with pytest.raises(RuntimeError, match="frame 7 has no camera solve"):
        bpy.ops.depth360.apply_camera_solve(plate_path=str(plate), depth_path=str(depth), frame=7)
    assert scene_state(scene) == before
