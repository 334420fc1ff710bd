"""All or nothing (issue 11, point 6): an operator that fails leaves the scene exactly as it was.

The scene is not empty: a compositor, cameras, an unrelated object and render settings of
the artist's own are there before each operator runs on bad input, and everything
`scene_state` reads (datablocks of every kind by name, render and colour settings,
passes, cameras, compositor, paint canvas, selection) must be the same afterwards.
"""

from __future__ import annotations

import bpy
import numpy as np
import pytest

from tests.blender.compositing_helpers import (
    builders,
    reset_scene,
    scene_state,
    write_8bit_depth,
    write_depth,
    write_plate,
)

HEIGHT, WIDTH = 32, 64


def _pano() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.uniform(0.1, 0.9, size=(HEIGHT, WIDTH, 3)).astype(np.float32)


@pytest.fixture
def artist_scene(installed_extension):
    """The artist's own camera, settings and a selected cube; no compositor."""
    scene = reset_scene()
    camera = bpy.data.objects.new("Artist Camera", bpy.data.cameras.new("Artist Camera"))
    scene.collection.objects.link(camera)
    camera.location = (1.0, 2.0, 3.0)
    scene.camera = camera
    cube = bpy.data.objects.new("Cube", bpy.data.meshes.new("Cube"))
    scene.collection.objects.link(cube)
    bpy.context.view_layer.objects.active = cube
    cube.select_set(True)
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.film_transparent = False
    scene.render.resolution_x, scene.render.resolution_y = 320, 200
    scene.view_settings.exposure, scene.view_settings.gamma = 0.5, 1.2
    for layer in scene.view_layers:
        layer.use_pass_z = False
        layer.cycles.use_pass_shadow_catcher = False
    return scene


@pytest.fixture
def busy_scene(artist_scene, tmp_path):
    """The artist's scene with a Depth 360 compositor built before (its camera is not the scene's)."""
    good = tmp_path / "good"
    good.mkdir()
    plate = write_plate(good / "plate.png", _pano())
    depth = write_depth(good / "depth.exr", np.full((HEIGHT, WIDTH), 2.0, np.float32))
    camera, engine = artist_scene.camera, artist_scene.render.engine
    builders("compositor_tree").build_compositor(plate, depth, scene=artist_scene)
    artist_scene.camera, artist_scene.render.engine = camera, engine
    return artist_scene


def test_the_transaction_puts_back_what_a_failing_block_changed(artist_scene, tmp_path):
    """Every builder inside one transaction, then an error: the scene is as it was."""
    scene = artist_scene
    transaction, image_data = builders("scene_transaction"), builders("image_data")
    depth_mesh, compositor_tree = builders("depth_mesh"), builders("compositor_tree")
    plate = write_plate(tmp_path / "plate.png", _pano())
    depth = write_depth(tmp_path / "depth.exr", np.full((HEIGHT, WIDTH), 2.0, np.float32))
    existing = bpy.data.images.load(str(depth))  # the artist's: the builders reuse it, as Non-Color
    parked = bpy.data.objects.new("Depth360 Camera", bpy.data.cameras.new("Depth360 Camera"))
    parked.location = (5.0, 5.0, 5.0)  # not in the scene: the builders link, move and make it panoramic
    before = scene_state(scene)
    with pytest.raises(image_data.CompositingInputError, match="a later step failed"):
        with transaction.scene_transaction(scene):
            obj = depth_mesh.build_mesh(plate, depth, scene=scene, method="displace")
            depth_mesh.shadow_catcher(obj, scene)
            compositor_tree.build_compositor(plate, depth, scene=scene, defocus=True)
            scene.tool_settings.image_paint.canvas = existing
            bpy.context.view_layer.objects.active = obj
            obj.select_set(True)
            changed = scene_state(scene)
            raise image_data.CompositingInputError("a later step failed")
    assert {key for key in before if changed[key] != before[key]} >= {
        "objects", "meshes", "materials", "textures", "render", "view", "passes", "camera", "cameras",
        "compositor", "canvas", "linked", "image settings", "active", "selected"}  # all of it was changed
    assert scene_state(scene) == before
    assert parked.name not in scene.collection.objects and tuple(parked.location) == (5.0, 5.0, 5.0)

    with transaction.scene_transaction(scene):  # without an error, everything stays
        obj = depth_mesh.build_mesh(plate, depth, scene=scene)
    assert obj.name in scene.collection.objects and scene.camera == parked


def _bad_inputs(folder) -> dict[str, tuple[str, str]]:
    """(plate, depth) pairs a builder must refuse."""
    folder.mkdir(exist_ok=True)
    plate = write_plate(folder / "plate.png", _pano())
    garbage = folder / "garbage.exr"
    garbage.write_bytes(b"not an image" * 100)
    square = write_depth(folder / "square.exr", np.full((HEIGHT, HEIGHT), 2.0, np.float32))
    eight_bit = write_8bit_depth(folder / "eight-bit.png", np.full((HEIGHT, WIDTH), 2.0, np.float32))
    depth = write_depth(folder / "depth.exr", np.full((HEIGHT, WIDTH), 3.0, np.float32))
    sequence = folder / "sequence"
    sequence.mkdir(exist_ok=True)
    write_depth(sequence / "distance_00001.exr", np.full((HEIGHT, WIDTH), 3.0, np.float32))
    (sequence / "distance_00002.exr").write_bytes(b"not an image" * 100)  # the current frame
    eight = folder / "eight"
    eight.mkdir(exist_ok=True)
    write_depth(eight / "distance_00001.exr", np.full((HEIGHT, WIDTH), 3.0, np.float32))
    write_8bit_depth(eight / "distance_00002.png", np.full((HEIGHT, WIDTH), 2.0, np.float32)).rename(
        eight / "distance_00002.exr")  # PNG bytes: Blender reads files by their content
    return {
        "bad depth file": (plate, garbage),
        "different aspect": (plate, square),
        "8-bit depth": (plate, eight_bit),
        "missing plate": (folder / "no-plate.png", depth),
        "unreadable frame of a sequence": (plate, sequence / "distance_00001.exr"),
        "8-bit frame of a sequence": (plate, eight / "distance_00001.exr"),
    }


OPERATORS = {
    "build_mesh": lambda plate, depth: bpy.ops.depth360.build_mesh(
        image_path=str(plate), depth_path=str(depth), rows=8, cols=16, shadow_catcher=True),
    "build_mesh displace": lambda plate, depth: bpy.ops.depth360.build_mesh(
        image_path=str(plate), depth_path=str(depth), rows=8, cols=16, method="displace"),
    "build_compositor": lambda plate, depth: bpy.ops.depth360.build_compositor(
        plate_path=str(plate), depth_path=str(depth), defocus=True),
    "paint_depth": lambda plate, depth: bpy.ops.depth360.paint_depth(
        plate_path=str(plate), depth_path=str(depth)),
}
REFUSALS = {
    "bad depth file": "cannot read an image from it",
    "different aspect": "must have the same aspect",
    "8-bit depth": "must be a float file",
    "missing plate": "no-plate.png: file not found",
    "unreadable frame of a sequence": "distance_00002.exr: Blender cannot read an image from it",
    "8-bit frame of a sequence": "distance_00002.exr: depth must be a float file",
}


# The compositor and the Displace modifier read a sequence's frames when they render, not
# when they are built: a bad later frame is not theirs to refuse.
CASES = [(operator, case) for operator in OPERATORS for case in REFUSALS
         if "sequence" not in case or operator in ("build_mesh", "paint_depth")]


@pytest.mark.parametrize(("operator", "case"), CASES)
def test_an_operator_refusing_bad_input_leaves_the_scene_as_it_was(busy_scene, tmp_path, operator, case):
    plate, depth = _bad_inputs(tmp_path / "bad")[case]
    if "sequence" in case:
        busy_scene.frame_set(2)  # the bad frame
    before = scene_state(busy_scene)
    with pytest.raises(RuntimeError, match=REFUSALS[case]) as raised:
        OPERATORS[operator](plate, depth)
    assert "Traceback" not in str(raised.value)  # an error report, not a crash
    assert scene_state(busy_scene) == before
