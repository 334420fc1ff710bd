"""VR180 footage in real Blender (issue 14, point 3): a 180-degree camera for the mesh and the compositor.

A VR180 plate is the left eye of a VR180 pair: a half equirect (180 x 180 degrees, square,
centre along +X) whose depth is the distance from the left eye. The builders recognise it by
its square size: Blender's equirect camera is limited to longitude and latitude +-90 degrees,
and the mesh covers the half sphere in front. Ground truth: the project's `room` rendered as
a VR180 pair by Cycles (tests/groundtruth.render_vr180), and the exact ray-sphere distance of
the virtual sphere from the left eye.
"""

from __future__ import annotations

import math

import bpy
import numpy as np
import pytest

from tests import groundtruth
from tests.blender.compositing_helpers import (
    add_sphere,
    builders,
    configure_render,
    ray_sphere_distance,
    render_composite,
    reset_scene,
    write_depth,
    write_plate,
)

MAGENTA = (1.0, 0.0, 1.0)
WIDTH = 256


@pytest.fixture
def clean_scene(installed_extension):
    return reset_scene()


@pytest.fixture(scope="module")
def pair():
    return groundtruth.render_vr180("room", width=WIDTH, samples=16)


def _half_equirect_rays(size: int) -> np.ndarray:
    centres = (np.arange(size) + 0.5) / size
    theta, phi = np.pi * centres[:, None], np.pi * (0.5 - centres[None, :])
    return np.stack(np.broadcast_arrays(np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi),
                                        np.cos(theta)), axis=-1)


def _footage(folder, pair):
    plate = write_plate(folder / "vr.left.png", pair.left_rgb)
    depth = write_depth(folder / "vr.distance.exr", pair.left_distance)
    return plate, depth


def _limits(camera) -> tuple[float, ...]:
    data = camera.data
    return tuple(round(math.degrees(v), 3) for v in (data.longitude_min, data.longitude_max,
                                                     data.latitude_min, data.latitude_max))


@pytest.mark.slow
def test_a_virtual_object_goes_behind_a_real_one_through_the_180_degree_camera(clean_scene, tmp_path, pair):
    compositor_tree = builders("compositor_tree")
    plate, depth = _footage(tmp_path, pair)
    scene = bpy.context.scene
    compositor_tree.build_compositor(plate, depth)
    assert scene.camera.data.type == "PANO" and _limits(scene.camera) == (-90.0, 90.0, -90.0, 90.0)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (WIDTH, WIDTH)
    scene.camera.location = tuple(pair.left_eye_position)  # the depth belongs to the left eye
    # A sphere 3 m out along +X, partly behind the real box_x (x 1.8..2.6, y 0..0.8).
    centre, radius = (3.0, 0.1, -0.45), 0.55
    add_sphere(scene, "virtual", centre, radius, MAGENTA, emission=True)
    configure_render(scene, samples=8)
    composite = render_composite(scene, tmp_path / "composite.png")
    rays = _half_equirect_rays(WIDTH)
    hit = ray_sphere_distance(rays, np.asarray(centre) - pair.left_eye_position, radius)
    truth = hit < pair.left_distance
    assert truth.sum() > 80 and (np.isfinite(hit) & ~truth).sum() > 20  # partly hidden
    towards = np.sum((composite - pair.left_rgb) * (np.asarray(MAGENTA) - pair.left_rgb), -1)
    seen = towards > 0.5 * np.sum((np.asarray(MAGENTA) - pair.left_rgb) ** 2, -1)
    iou = float((seen & truth).sum() / max((seen | truth).sum(), 1))
    print(f"VR180 IoU {iou:.3f}, Blender {bpy.app.version_string}")
    assert iou >= 0.95


def test_the_mesh_of_a_vr180_plate_is_the_half_sphere_in_front(clean_scene, tmp_path, pair):
    depth_mesh = builders("depth_mesh")
    plate, depth = _footage(tmp_path, pair)
    obj = depth_mesh.build_mesh(plate, depth, resolution=(64, 64), discontinuity=None)
    mesh = obj.data
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    assert len(mesh.vertices) == 64 * 64 and len(mesh.polygons) == 63 * 63
    assert (co[:, 0] > -1e-4).all()  # nothing behind the camera
    rows, cols = depth_mesh.grid_pixels(WIDTH, WIDTH, 64, 64)
    expected = _half_equirect_rays(WIDTH)[rows][:, cols].reshape(-1, 3) * pair.left_distance[rows][:, cols].reshape(-1, 1)
    np.testing.assert_allclose(co, expected, atol=1e-3)
    camera = bpy.context.scene.camera
    assert camera.name == "Depth360 Camera" and _limits(camera) == (-90.0, 90.0, -90.0, 90.0)
    # A 360 plate afterwards opens the same camera to the whole sphere again.
    full = groundtruth.render_mono("room", width=128, samples=4)
    depth_mesh.build_mesh(write_plate(tmp_path / "p.png", full.rgb), write_depth(tmp_path / "d.exr", full.distance),
                          name="full")
    assert _limits(bpy.context.scene.camera) == (-180.0, 180.0, -90.0, 90.0)
