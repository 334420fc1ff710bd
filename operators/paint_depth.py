"""Operators "Paint Depth" and "Save Painted Depth": fix a depth map by hand on the 360 mesh.

Paint Depth opens the distance file of the depth mesh (the current frame's file for a
sequence) as a float image and makes it the texture-paint canvas of the mesh, mapped by
the mesh's UVs (the plate's pixel centres, so depth pixels land where the plate shows
them). Painting sets distances in metres: the brush colour's value is the distance.
Save Painted Depth writes the image back as single-channel float32 OpenEXR (the
engine's format, DESIGN.md; the first save keeps the original as `*.unpainted.exr`)
and rebuilds the mesh from it.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import bpy
import numpy as np
from bpy.props import StringProperty

from ..compositing import depth_mesh
from ..compositing.image_data import CompositingInputError, resolve_footage
from ..estimators.media.image_io import atomic_path

MESH_NAME = "Depth360 Mesh"
DISPLACE_MODIFIER = "Depth360 Displace"
PLATE_KEY, DEPTH_KEY, RESOLUTION_KEY = "depth360_plate_path", "depth360_depth_path", "depth360_resolution"
_EXR_MAGIC, _EXR_FLOAT, _EXR_ZIP, _ZIP_LINES = 20000630, 2, 3, 16


def _attribute(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def _zip_block(raw: bytes) -> bytes:
    """OpenEXR's ZIP block: bytes split into even/odd halves, delta-coded, deflated."""
    data = np.frombuffer(raw, np.uint8)
    reordered = np.concatenate([data[0::2], data[1::2]]).astype(np.int16)
    predicted = reordered.copy()
    predicted[1:] = (reordered[1:] - reordered[:-1] + 128) & 0xFF
    packed = zlib.compress(predicted.astype(np.uint8).tobytes(), 6)
    return packed if len(packed) < len(raw) else raw


def write_depth_exr(path: str | os.PathLike, values: np.ndarray) -> None:
    """Write [H, W] finite `values` as a one-channel ("Y") float32 ZIP OpenEXR, top row first.

    The engine's depth format (its `image_io.write_exr`), written without the OpenEXR
    package, which Blender does not ship. Complete or absent (temporary name, rename).
    """
    values = np.asarray(values, dtype="<f4")
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"depth must be a non-empty [H, W] array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"depth for {path} holds NaN or Inf")
    height, width = values.shape
    window = struct.pack("<4i", 0, 0, width - 1, height - 1)
    header = b"".join([
        struct.pack("<ii", _EXR_MAGIC, 2),
        _attribute("channels", "chlist", b"Y\0" + struct.pack("<iB3xii", _EXR_FLOAT, 0, 1, 1) + b"\0"),
        _attribute("compression", "compression", bytes([_EXR_ZIP])),
        _attribute("dataWindow", "box2i", window),
        _attribute("displayWindow", "box2i", window),
        _attribute("lineOrder", "lineOrder", b"\0"),
        _attribute("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
        _attribute("screenWindowCenter", "v2f", struct.pack("<ff", 0.0, 0.0)),
        _attribute("screenWindowWidth", "float", struct.pack("<f", 1.0)),
        b"\0",
    ])
    chunks = []
    for first in range(0, height, _ZIP_LINES):
        block = _zip_block(np.ascontiguousarray(values[first:first + _ZIP_LINES]).tobytes())
        chunks.append(struct.pack("<ii", first, len(block)) + block)
    offset = len(header) + 8 * len(chunks)
    table = []
    for chunk in chunks:
        table.append(struct.pack("<Q", offset))
        offset += len(chunk)
    with atomic_path(path) as temporary:
        Path(temporary).write_bytes(header + b"".join(table) + b"".join(chunks))


def image_depth(image: bpy.types.Image) -> np.ndarray:
    """The float32 [H, W] values of a depth image (its red channel), top row first."""
    width, height = image.size
    pixels = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(pixels)
    return pixels.reshape(height, width, image.channels)[::-1, :, 0].copy()


def depth_mesh_object(context) -> bpy.types.Object | None:
    """The depth mesh to paint: the active object if it is one, else "Depth360 Mesh"."""
    active = context.view_layer.objects.active
    if active is not None and active.type == "MESH" and (DEPTH_KEY in active or active.name.startswith(MESH_NAME)):
        return active
    obj = bpy.data.objects.get(MESH_NAME)
    return obj if obj is not None and obj.type == "MESH" else None


def _set_mode(context, obj, mode: str) -> None:
    for other in context.view_layer.objects:
        if other is not None:  # None: an object removed since the last view-layer update
            other.select_set(other == obj)
    context.view_layer.objects.active = obj
    if obj.mode != mode:
        bpy.ops.object.mode_set(mode=mode)


def _resolution(obj) -> tuple[int, int] | None:
    value = obj.get(RESOLUTION_KEY)
    return (int(value[0]), int(value[1])) if value is not None else None


class DEPTH360_OT_paint_depth(bpy.types.Operator):
    """Paint the depth map on the 360 mesh (texture paint; the brush value is the distance in metres)"""

    bl_idname = "depth360.paint_depth"
    bl_label = "Paint Depth"
    bl_options = {"REGISTER", "UNDO"}

    depth_path: StringProperty(name="Depth", subtype="FILE_PATH",
                               description="Distance file (empty: the mesh's, else the last estimate's)")
    plate_path: StringProperty(name="Plate", subtype="FILE_PATH",
                               description="Plate for a new mesh (empty: the scene's source)")

    def execute(self, context):
        scene = context.scene
        obj = depth_mesh_object(context)
        depth_path = self.depth_path or (obj.get(DEPTH_KEY, "") if obj is not None else "") \
            or scene.depth360.depth_path
        if not depth_path:
            self.report({"ERROR"}, "No depth to paint: estimate depth first, or give a depth file")
            return {"CANCELLED"}
        try:
            footage = resolve_footage(depth_path)
            if obj is None:
                plate = self.plate_path or scene.depth360.source_path
                if not plate:
                    raise CompositingInputError("No depth mesh and no plate to build one from")
                obj = depth_mesh.build_mesh(plate, depth_path, scene=scene)
                obj[PLATE_KEY] = bpy.path.abspath(plate)
        except CompositingInputError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        frame_file = footage.frame_path(scene.frame_current)
        loaded = set(bpy.data.images)
        try:
            image = bpy.data.images.load(str(frame_file), check_existing=True)
        except RuntimeError as error:
            self.report({"ERROR"}, f"{frame_file}: Blender cannot read it ({error})")
            return {"CANCELLED"}
        if not image.is_float:
            if image not in loaded:
                bpy.data.images.remove(image)
            self.report({"ERROR"}, f"{frame_file}: depth must be a float file (OpenEXR) to paint it")
            return {"CANCELLED"}
        image.colorspace_settings.name = "Non-Color"
        obj[DEPTH_KEY] = str(footage.path)
        paint = scene.tool_settings.image_paint
        paint.mode = "IMAGE"
        paint.canvas = image
        obj.data.uv_layers.active = obj.data.uv_layers["UVMap"]
        _set_mode(context, obj, "TEXTURE_PAINT")
        self.report({"INFO"}, f"Painting {frame_file.name} on {obj.name}: the brush value is metres")
        return {"FINISHED"}


class DEPTH360_OT_save_painted_depth(bpy.types.Operator):
    """Write the painted depth back to its OpenEXR file and rebuild the depth mesh from it"""

    bl_idname = "depth360.save_painted_depth"
    bl_label = "Save Painted Depth"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        obj = depth_mesh_object(context)
        image = scene.tool_settings.image_paint.canvas
        if obj is None or DEPTH_KEY not in obj or image is None:
            self.report({"ERROR"}, "Nothing to save: start with Paint Depth")
            return {"CANCELLED"}
        target = Path(bpy.path.abspath(image.filepath_raw))
        values = image_depth(image)
        bad = int(np.count_nonzero(~np.isfinite(values) | (values <= 0)))
        if bad:
            self.report({"ERROR"}, f"{target}: the painted depth has {bad} pixels that are not positive "
                        "distances; paint distances in metres (above 0)")
            return {"CANCELLED"}
        backup = target.with_name(target.name.removesuffix(".exr") + ".unpainted.exr")
        try:
            if not backup.exists():
                shutil.copyfile(target, backup)
            write_depth_exr(target, values)
        except OSError as error:
            self.report({"ERROR"}, f"cannot write {target}: {error.strerror or error}")
            return {"CANCELLED"}
        image.reload()
        try:
            obj = self._rebuild(context, obj)
        except CompositingInputError as error:
            self.report({"ERROR"}, f"Saved {target.name}, but rebuilding the mesh failed: {error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved {target} and rebuilt {obj.name}")
        return {"FINISHED"}

    def _rebuild(self, context, old: bpy.types.Object) -> bpy.types.Object:
        """A new depth mesh from the saved file, in place of `old` (kept if building fails)."""
        if old.modifiers.get(DISPLACE_MODIFIER) is not None:
            return old  # the Displace modifier reads the reloaded image itself
        plate = old.get(PLATE_KEY) or self._plate_of(old)
        painting = old.mode == "TEXTURE_PAINT"
        new = depth_mesh.build_mesh(
            plate, old[DEPTH_KEY], name=f"{old.name} (rebuilt)", resolution=_resolution(old),
            location=tuple(old.location), scene=context.scene,
        )
        for key in (PLATE_KEY, DEPTH_KEY, RESOLUTION_KEY):
            if key in old:
                new[key] = old[key]
        new[PLATE_KEY] = plate
        if painting:
            _set_mode(context, old, "OBJECT")
        name, mesh, materials = old.name, old.data, list(old.data.materials)
        bpy.data.objects.remove(old)
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)
        for material in materials:
            if material is not None and material.users == 0:
                bpy.data.materials.remove(material)
        new.name = new.data.name = name
        context.view_layer.update()
        if painting:
            _set_mode(context, new, "TEXTURE_PAINT")
        else:
            context.view_layer.objects.active = new
        return new

    @staticmethod
    def _plate_of(obj) -> str:
        for material in obj.data.materials:
            node = material.node_tree.nodes.get("Depth360 Plate") if material and material.node_tree else None
            if node is not None and node.image is not None:
                return bpy.path.abspath(node.image.filepath)
        raise CompositingInputError(f"{obj.name}: cannot tell which plate it was built from")


CLASSES = [DEPTH360_OT_paint_depth, DEPTH360_OT_save_painted_depth]
