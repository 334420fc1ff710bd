"""An outdoor plate in real Blender (issue 12): the sky, written as the engine writes it, stays behind.

The engine writes a pixel at infinity with distance = far and mask 0 (DESIGN.md). The
compositor must never put that sky in front of a virtual object, and the depth mesh must
keep the sky a far dome with no face joining it to the real scene at the horizon.
"""

from __future__ import annotations

import bpy
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
    write_depth,
    write_plate,
)

FAR = 100.0
MAGENTA = (1.0, 0.0, 1.0)


@pytest.fixture
def clean_scene(installed_extension):
    return reset_scene()


@pytest.fixture(scope="module")
def outdoor():
    return groundtruth.render_mono("outdoor", width=256, samples=16, seed=5)


def _engine_footage(folder, truth):
    """The plate, distance and mask files as `depth360 estimate` names and fills them."""
    finite = np.isfinite(truth.distance)
    plate = write_plate(folder / "outdoor.png", truth.rgb)
    depth = write_depth(folder / "outdoor.distance.exr", np.where(finite, np.minimum(truth.distance, FAR), FAR))
    write_depth(folder / "outdoor.mask.exr", finite.astype(np.float32))
    return plate, depth


@pytest.mark.slow
def test_a_virtual_object_in_front_of_the_sky_is_never_hidden(clean_scene, tmp_path, outdoor):
    compositor_tree = builders("compositor_tree")
    plate, depth = _engine_footage(tmp_path, outdoor)
    scene = bpy.context.scene
    compositor_tree.build_compositor(plate, depth)
    # Above the horizon, 5 m away: against the sky.
    centre, radius = (5.0, -1.0, 1.6), 1.0
    add_sphere(scene, "virtual", centre, radius, MAGENTA, emission=True)
    configure_render(scene, samples=8, crisp=True)  # pixel-centre rays, as the truth is counted
    composite = render_composite(scene, tmp_path / "composite.png")
    rays = equirect().ray_directions(outdoor.height, outdoor.width).astype(np.float64)
    hit = ray_sphere_distance(rays, centre, radius)
    truth = hit < outdoor.distance
    against_sky = truth & ~np.isfinite(outdoor.distance)
    assert against_sky.sum() > 60  # the test is about the sky
    towards = np.sum((composite - outdoor.rgb) * (np.asarray(MAGENTA) - outdoor.rgb), -1)
    seen = towards > 0.5 * np.sum((np.asarray(MAGENTA) - outdoor.rgb) ** 2, -1)
    iou = float((seen & truth).sum() / max((seen | truth).sum(), 1))
    print(f"outdoor IoU {iou:.3f} ({against_sky.sum()} px against the sky), Blender {bpy.app.version_string}")
    assert iou >= 0.95
    interior = against_sky.copy()  # away from its silhouette, every pixel in front of the sky shows it
    for axis in (0, 1):
        for step in (-1, 1):
            interior &= np.roll(truth, step, axis)
    assert interior.sum() > 100 and seen[interior].all()


def test_the_mesh_keeps_the_sky_apart_from_the_ground(clean_scene, tmp_path, outdoor):
    depth_mesh = builders("depth_mesh")
    plate, depth = _engine_footage(tmp_path, outdoor)
    obj = depth_mesh.build_mesh(plate, depth, resolution=(128, 256))
    mesh = obj.data
    positions = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", positions)
    distance = np.linalg.norm(positions.reshape(-1, 3), axis=1)
    sky = np.abs(distance - FAR) < 1e-3 * FAR
    assert sky.mean() > 0.3  # the far dome is there
    stretched = mixed = 0
    for polygon in mesh.polygons:
        corners = np.asarray(polygon.vertices)
        mixed += bool(sky[corners].any() and not sky[corners].all())
        stretched += bool(distance[corners].max() > 1.1 * distance[corners].min())
    assert mixed == 0 and stretched == 0
    # Without the mask file the faces that the discontinuity rule keeps may reach the dome.
    (tmp_path / "outdoor.mask.exr").unlink()
    bare = depth_mesh.build_mesh(plate, depth, resolution=(128, 256), name="bare")
    assert len(bare.data.polygons) >= len(mesh.polygons)
