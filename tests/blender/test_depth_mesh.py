"""The 360 depth mesh in real Blender, against Cycles ground truth (issue 7, points 1, 4, 6)."""

from __future__ import annotations

import bpy
import numpy as np
import pytest

from tests import groundtruth
from tests.blender.compositing_helpers import (
    builders,
    configure_render,
    datablock_counts,
    equirect,
    render_composite,
    reset_scene,
    write_8bit_depth,
    write_depth,
    write_footage,
    write_plate,
)
from tests.groundtruth.scenes import MARKER_RADIUS


@pytest.fixture
def clean_scene(installed_extension):
    return reset_scene()


def _vertices(obj, evaluated: bool = False) -> np.ndarray:
    mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh() if evaluated else obj.data
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def _nearest_pixel(directions: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = equirect().direction_to_pixel(directions, height, width)
    rows = np.clip(np.rint(rows), 0, height - 1).astype(int)
    cols = np.mod(np.rint(cols), width).astype(int)
    return rows, cols


@pytest.fixture(scope="module")
def markers():
    return groundtruth.render_mono("markers", width=256, samples=16)




@pytest.mark.slow
def test_vertices_lie_on_the_true_surface_and_markers_line_up(clean_scene, tmp_path, markers):
    depth_mesh = builders("depth_mesh")
    plate, depth = write_footage(tmp_path, markers)
    obj = depth_mesh.build_mesh(plate, depth, resolution=(64, 128))
    co = _vertices(obj) - np.asarray(obj.location)
    distance = np.linalg.norm(co, axis=1)
    rays = co / distance[:, None]
    rows, cols = _nearest_pixel(rays, markers.height, markers.width)

    # Point 1: every vertex within 1 % of the true distance along its own ray.
    true = markers.distance[rows, cols]
    assert np.max(np.abs(distance - true) / true) < 0.01

    # The vertices that see marker+Y in the source render lie on that marker, at +Y.
    marker = markers.object("marker+Y")
    on_marker = markers.object_index[rows, cols] == marker.index
    assert on_marker.sum() >= 4
    from_centre = np.linalg.norm(co[on_marker] - np.asarray(marker.location), axis=1)
    assert np.all(np.abs(from_centre - MARKER_RADIUS) < 0.02)
    mean_ray = rays[on_marker].mean(axis=0)
    assert mean_ray @ np.array([0.0, 1.0, 0.0]) / np.linalg.norm(mean_ray) > 0.99

    # No face spans the marker's silhouette (a depth jump of 2x).
    mesh = obj.data
    loops = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    starts = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("loop_start", starts)
    face_min = np.minimum.reduceat(distance[loops], starts)
    face_max = np.maximum.reduceat(distance[loops], starts)
    assert np.all(face_max <= face_min * 1.1 + 1e-6)

    # The plate maps without mirroring: the UV of the vertex looking along +Y samples green.
    plus_y = int(np.argmax(rays @ np.array([0.0, 1.0, 0.0])))
    uv = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers.active.data.foreach_get("uv", uv)
    u, v = uv.reshape(-1, 2)[np.flatnonzero(loops == plus_y)[0]]
    row = int(np.clip((1.0 - v) * markers.height, 0, markers.height - 1))
    col = int(u * markers.width) % markers.width
    red, green, blue = markers.rgb[row, col]
    assert green > 0.6 and red < 0.4 and blue < 0.4, markers.rgb[row, col]


def test_smooth_scene_gives_a_closed_sphere_with_wrap_and_poles(clean_scene, tmp_path):
    depth_mesh = builders("depth_mesh")
    truth = groundtruth.render_mono("sphere", width=128, samples=4, radius=3.0)
    plate, depth = write_footage(tmp_path, truth)
    rows, cols = 16, 32
    obj = depth_mesh.build_mesh(plate, depth, resolution=(rows, cols))
    mesh = obj.data
    assert len(mesh.vertices) == rows * cols + 2
    assert len(mesh.polygons) == (rows - 1) * cols + 2 * cols
    # Euler characteristic of a closed sphere: V - E + F = 2 (the wrap column is joined).
    assert len(mesh.vertices) - len(mesh.edges) + len(mesh.polygons) == 2
    np.testing.assert_allclose(np.linalg.norm(_vertices(obj), axis=1), 3.0, rtol=0.01)
    camera = bpy.context.scene.camera
    assert camera.data.type == "PANO" and camera.data.panorama_type == "EQUIRECTANGULAR"
    np.testing.assert_allclose(np.degrees(camera.rotation_euler), (90, 0, -90), atol=1e-4)
    assert tuple(camera.location) == tuple(obj.location)


def test_displace_variant_follows_the_depth(clean_scene, tmp_path):
    depth_mesh = builders("depth_mesh")
    height, width = 64, 128
    rays = equirect().ray_directions(height, width)
    field = (2.0 + rays[..., 0] + 0.5 * rays[..., 2]).astype(np.float32)  # smooth, 0.5..3.5 m
    plate = write_plate(tmp_path / "plate.png", np.full((height, width, 3), 0.5, np.float32))
    depth = write_depth(tmp_path / "depth.exr", field)
    obj = depth_mesh.build_mesh(plate, depth, method="displace", resolution=(32, 64))
    modifier = obj.modifiers["Depth360 Displace"]
    assert modifier.strength == 1.0 and modifier.mid_level == 1.0
    co = _vertices(obj, evaluated=True)
    radius = np.linalg.norm(co, axis=1)
    expected = 2.0 + co[:, 0] / radius + 0.5 * co[:, 2] / radius
    np.testing.assert_allclose(radius, expected, rtol=0.03)


def test_plate_sequence_on_the_mesh_follows_the_frame(clean_scene, tmp_path):
    depth_mesh = builders("depth_mesh")
    height, width = 32, 64
    colours = [(0.9, 0.1, 0.1), (0.1, 0.9, 0.1), (0.1, 0.1, 0.9), (0.9, 0.9, 0.1)]
    for number, colour in enumerate(colours, start=1):
        write_plate(tmp_path / f"plate_{number:05d}.png", np.broadcast_to(colour, (height, width, 3)))
    depth = write_depth(tmp_path / "depth.exr", np.full((height, width), 4.0, np.float32))
    obj = depth_mesh.build_mesh(tmp_path / "plate_00001.png", depth, resolution=(16, 32))
    texture = obj.data.materials[0].node_tree.nodes["Depth360 Plate"]
    assert texture.image.source == "SEQUENCE"
    assert texture.image_user.frame_duration == len(colours)
    assert texture.image_user.use_auto_refresh

    scene = bpy.context.scene
    configure_render(scene, samples=1)
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.frame_set(3)
    rendered = render_composite(scene, tmp_path / "frame3.png")
    np.testing.assert_allclose(np.median(rendered.reshape(-1, 3), axis=0), colours[2], atol=0.02)


@pytest.mark.parametrize("problem", ["missing plate", "missing depth", "aspect", "8-bit depth", "bad frame start"])
def test_bad_input_is_refused_before_the_scene_changes(clean_scene, tmp_path, problem):
    depth_mesh = builders("depth_mesh")
    image_data = builders("image_data")
    plate = write_plate(tmp_path / "plate.png", np.full((32, 64, 3), 0.5, np.float32))
    depth = write_depth(tmp_path / "depth.exr", np.full((32, 64), 3.0, np.float32))
    expected_file = depth
    if problem == "missing plate":
        plate = expected_file = tmp_path / "nothing.png"
    elif problem == "missing depth":
        depth = expected_file = tmp_path / "nothing.exr"
    elif problem == "aspect":
        depth = expected_file = write_depth(tmp_path / "square.exr", np.full((32, 32), 3.0, np.float32))
    elif problem == "8-bit depth":
        depth = expected_file = write_8bit_depth(tmp_path / "depth8.png", np.full((32, 64), 3.0))
    else:
        for number in (3, 4):
            write_depth(tmp_path / f"d_{number:05d}.exr", np.full((32, 64), 3.0, np.float32))
        depth = expected_file = tmp_path / "d_00003.exr"
    before = datablock_counts()
    with pytest.raises(image_data.CompositingInputError, match=expected_file.name) as error:
        depth_mesh.build_mesh(plate, depth)
    assert isinstance(error.value, ValueError)
    assert datablock_counts() == before

    # The operator reports the same error, cancels, and changes nothing either.
    with pytest.raises(RuntimeError, match=expected_file.name):
        bpy.ops.depth360.build_mesh(image_path=str(plate), depth_path=str(depth))
    assert datablock_counts() == before


def test_operator_builds_a_shadow_catching_mesh(clean_scene, tmp_path):
    plate = write_plate(tmp_path / "plate.png", np.full((32, 64, 3), 0.5, np.float32))
    depth = write_depth(tmp_path / "depth.exr", np.full((32, 64), 3.0, np.float32))
    result = bpy.ops.depth360.build_mesh(
        image_path=str(plate), depth_path=str(depth), rows=16, cols=32, shadow_catcher=True
    )
    assert result == {"FINISHED"}
    obj = bpy.data.objects["Depth360 Mesh"]
    assert obj.is_shadow_catcher
    assert bpy.context.scene.render.film_transparent
    assert "Depth360 Catcher Mix" in obj.data.materials[0].node_tree.nodes
