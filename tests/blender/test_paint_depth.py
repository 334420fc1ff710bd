"""Paint Depth / Save Painted Depth in real Blender: a painted change reaches the EXR and the mesh.

A stroke is made the way texture paint leaves it: new values in the canvas image's
pixels. Files are checked with the engine's own reader (OpenEXR package).
"""

from __future__ import annotations

import importlib
import struct
import zlib

import bpy
import numpy as np
import pytest

from tests.blender.compositing_helpers import (
    datablock_counts,
    equirect,
    reset_scene,
    scene_state,
    write_plate,
)
from tests.blender.conftest import PACKAGE

HEIGHT, WIDTH = 32, 64
PATCH = (slice(12, 20), slice(26, 38))  # around the image centre: the +X direction
BEFORE, PAINTED = 2.0, 3.5


def _module(name: str):
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture
def footage(installed_extension, tmp_path):
    reset_scene()
    paint = _module("operators.paint_depth")
    plate = write_plate(tmp_path / "pano.png", np.full((HEIGHT, WIDTH, 3), 0.5, np.float32))
    depth = tmp_path / "pano.distance.exr"
    paint.write_depth_exr(depth, np.full((HEIGHT, WIDTH), BEFORE, np.float32))
    return plate, depth


def _vertices(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3) - np.asarray(obj.location)


def _stroke(image, rows: slice, cols: slice, value: float) -> None:
    width, height = image.size
    pixels = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(pixels)
    pixels = pixels.reshape(height, width, image.channels)
    flipped = pixels[::-1]  # Blender's rows run bottom-up
    flipped[rows, cols, :3] = value
    image.pixels.foreach_set(pixels.ravel())
    image.update()


def test_exr_writer_round_trips_through_openexr_and_blender(installed_extension, tmp_path):
    paint = _module("operators.paint_depth")
    read_exr = _module("estimators.media.image_io").read_exr
    rng = np.random.default_rng(5)
    for shape in ((37, 5), (1, 1), (64, 128)):
        values = rng.uniform(0.01, 500.0, size=shape).astype(np.float32)
        path = tmp_path / f"depth-{shape[0]}x{shape[1]}.exr"
        paint.write_depth_exr(path, values)
        np.testing.assert_array_equal(read_exr(path), values)  # one channel, bit for bit
        image = bpy.data.images.load(str(path), check_existing=False)
        image.colorspace_settings.name = "Non-Color"
        assert image.is_float
        np.testing.assert_array_equal(paint.image_depth(image), values)
        bpy.data.images.remove(image)
    smooth = np.tile(np.linspace(1.0, 2.0, 256, dtype=np.float32), (32, 1))
    paint.write_depth_exr(tmp_path / "smooth.exr", smooth)
    assert (tmp_path / "smooth.exr").stat().st_size < smooth.nbytes / 2  # ZIP compressed
    with pytest.raises(ValueError, match="NaN or Inf"):
        paint.write_depth_exr(tmp_path / "bad.exr", np.array([[1.0, np.inf]], np.float32))
    assert not (tmp_path / "bad.exr").exists()


def test_a_painted_change_reaches_the_exr_and_moves_the_mesh(footage):
    plate, depth = footage
    read_exr = _module("estimators.media.image_io").read_exr
    assert bpy.ops.depth360.paint_depth(depth_path=str(depth), plate_path=str(plate)) == {"FINISHED"}
    obj = bpy.data.objects["Depth360 Mesh"]
    assert obj.mode == "TEXTURE_PAINT" and bpy.context.view_layer.objects.active == obj
    canvas = bpy.context.scene.tool_settings.image_paint.canvas
    assert canvas.filepath_raw == str(depth) and canvas.colorspace_settings.name == "Non-Color"
    np.testing.assert_allclose(np.linalg.norm(_vertices(obj), axis=1), BEFORE, rtol=1e-5)

    _stroke(canvas, *PATCH, PAINTED)
    counts = datablock_counts()
    assert bpy.ops.depth360.save_painted_depth() == {"FINISHED"}

    expected = np.full((HEIGHT, WIDTH), BEFORE, np.float32)
    expected[PATCH] = PAINTED
    np.testing.assert_array_equal(read_exr(depth), expected)
    np.testing.assert_array_equal(read_exr(depth.with_name("pano.distance.unpainted.exr")), BEFORE)

    rebuilt = bpy.data.objects["Depth360 Mesh"]
    assert datablock_counts() == counts  # the old mesh and material were replaced, not piled up
    assert rebuilt.mode == "TEXTURE_PAINT"  # painting goes on
    co = _vertices(rebuilt)
    distance = np.linalg.norm(co, axis=1)
    rows, cols = equirect().direction_to_pixel(co / distance[:, None], HEIGHT, WIDTH)
    rows = np.clip(np.rint(rows).astype(int), 0, HEIGHT - 1)  # pixel centres are integers
    cols = np.mod(np.rint(cols).astype(int), WIDTH)
    in_patch = np.zeros((HEIGHT, WIDTH), bool)
    in_patch[PATCH] = True
    inside = in_patch[rows, cols]
    assert inside.sum() >= 20
    np.testing.assert_allclose(distance[inside], PAINTED, rtol=1e-5)
    np.testing.assert_allclose(distance[~inside], BEFORE, rtol=1e-5)
    # The patch points the +X way (the image centre): painted vertices moved out along +X.
    assert co[inside].mean(axis=0)[0] > 3.0


def test_save_refuses_nonsense_and_keeps_the_file(footage):
    plate, depth = footage
    assert bpy.ops.depth360.save_painted_depth.poll()
    with pytest.raises(RuntimeError, match="Nothing to save: start with Paint Depth"):
        bpy.ops.depth360.save_painted_depth()
    with pytest.raises(RuntimeError, match="No depth to paint"):
        bpy.context.scene.depth360.depth_path = ""
        bpy.ops.depth360.paint_depth()
    bpy.ops.depth360.paint_depth(depth_path=str(depth), plate_path=str(plate))
    original = depth.read_bytes()
    _stroke(bpy.context.scene.tool_settings.image_paint.canvas, slice(0, 2), slice(0, 4), 0.0)
    with pytest.raises(RuntimeError, match="8 pixels that are not positive distances"):
        bpy.ops.depth360.save_painted_depth()
    assert depth.read_bytes() == original

    plate_png = write_plate(depth.with_name("eight-bit.png"), np.zeros((HEIGHT, WIDTH, 3), np.float32))
    images = len(bpy.data.images)
    with pytest.raises(RuntimeError, match="depth must be a float file"):
        bpy.ops.depth360.paint_depth(depth_path=str(plate_png))
    assert len(bpy.data.images) == images


def _png16(path, values: np.ndarray) -> None:
    """A 16-bit greyscale PNG of `values` in 0..1 (Blender reads it as a float image)."""
    height, width = values.shape
    rows = np.round(np.clip(values, 0, 1) * 65535).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _files(folder) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def test_save_writes_only_the_depth_of_the_mesh_not_a_switched_canvas(footage):
    """Issue 11, point 5: the artist switched the canvas to the plate; saving must not touch it."""
    plate, depth = footage
    assert bpy.ops.depth360.paint_depth(depth_path=str(depth), plate_path=str(plate)) == {"FINISHED"}
    _stroke(bpy.context.scene.tool_settings.image_paint.canvas, *PATCH, PAINTED)
    files = _files(plate.parent)
    plate_image = bpy.data.images.load(str(plate), check_existing=True)
    bpy.context.scene.tool_settings.image_paint.canvas = plate_image
    _stroke(plate_image, *PATCH, 0.9)  # paint on the plate: positive values, a "valid" depth
    with pytest.raises(RuntimeError, match=r"The paint canvas 'pano.png' .* is not the depth of Depth360 Mesh "
                       r"\(.*pano.distance.exr\); nothing was saved"):
        bpy.ops.depth360.save_painted_depth()
    assert _files(plate.parent) == files  # plate and depth byte-identical, no *.unpainted.exr


def test_save_refuses_a_depth_file_that_is_not_a_float_exr(footage):
    """A 16-bit PNG named .exr paints (a float image) but is not an OpenEXR file: nothing is written."""
    plate, _ = footage
    fake = plate.with_name("fake.distance.exr")
    _png16(fake, np.full((HEIGHT, WIDTH), 0.5))
    assert bpy.ops.depth360.paint_depth(depth_path=str(fake), plate_path=str(plate)) == {"FINISHED"}
    canvas = bpy.context.scene.tool_settings.image_paint.canvas
    assert canvas.is_float and bpy.data.objects["Depth360 Mesh"]["depth360_depth_path"] == str(fake)
    _stroke(canvas, *PATCH, PAINTED)
    files = _files(plate.parent)
    with pytest.raises(RuntimeError, match="fake.distance.exr: not a float OpenEXR file"):
        bpy.ops.depth360.save_painted_depth()
    assert _files(plate.parent) == files
    paint = _module("operators.paint_depth")
    assert paint.is_float_exr(plate.with_name("pano.distance.exr")) and not paint.is_float_exr(fake)
    assert not paint.is_float_exr(plate) and not paint.is_float_exr(plate.with_name("missing.exr"))


def test_a_failed_rebuild_saves_nothing_and_keeps_the_painting(footage):
    """The plate went missing: the mesh cannot be rebuilt, so the file, scene and canvas stay as they were."""
    plate, depth = footage
    bpy.ops.depth360.paint_depth(depth_path=str(depth), plate_path=str(plate))
    canvas = bpy.context.scene.tool_settings.image_paint.canvas
    _stroke(canvas, *PATCH, PAINTED)
    plate.rename(plate.with_name("moved.png"))
    files = _files(depth.parent)
    counts = datablock_counts()
    with pytest.raises(RuntimeError, match="pano.png: file not found") as raised:
        bpy.ops.depth360.save_painted_depth()
    assert _files(depth.parent) == files and datablock_counts() == counts
    assert "Nothing saved (pano.distance.exr is unchanged)" in str(raised.value)
    assert _module("operators.paint_depth").image_depth(canvas)[PATCH].min() == PAINTED  # still painted


def test_paint_depth_leaves_no_mesh_when_the_depth_cannot_be_opened(footage, monkeypatch):
    """Issue 11, point 6: a new mesh is built, then the depth image fails to load: no mesh stays."""
    plate, depth = footage
    depth_mesh = _module("compositing.depth_mesh")
    build_mesh = depth_mesh.build_mesh

    def build_then_break(*args, **kwargs):
        obj = build_mesh(*args, **kwargs)
        depth.write_bytes(b"broken after the mesh was built" * 10)  # the file the canvas loads next
        return obj

    monkeypatch.setattr(depth_mesh, "build_mesh", build_then_break)
    scene = bpy.context.scene
    before = scene_state(scene)
    with pytest.raises(RuntimeError, match=r"pano\.distance\.exr: ") as raised:
        bpy.ops.depth360.paint_depth(depth_path=str(depth), plate_path=str(plate))
    assert "Depth360 Mesh" not in bpy.data.objects and scene_state(scene) == before
    assert "Blender cannot read an image from it" in str(raised.value)
