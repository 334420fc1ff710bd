"""Operators "Paint Depth" and "Save Painted Depth": fix a depth map by hand on the 360 mesh.

Paint Depth opens the distance file of the depth mesh (the current frame's file for a
sequence) as a float image and makes it the texture-paint canvas of the mesh, mapped by
the mesh's UVs (the plate's pixel centres, so depth pixels land where the plate shows
them). Painting sets distances in metres: the brush colour's value is the distance.
Save Painted Depth writes the image back as single-channel float32 OpenEXR (the
engine's format, DESIGN.md; the first save keeps the original as `*.unpainted.exr`)
and rebuilds the mesh from it. It writes only into the depth file recorded on the mesh
(for a sequence, the frame being painted), only when the canvas is that file and it is
a float OpenEXR file (its header says so, not its name); if the canvas was switched to
another image (the plate, say), it refuses and no file changes. Both operators complete
or leave the scene (and the depth file) as they were.
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
from ..compositing.scene_transaction import scene_transaction
from ..estimators.media.image_io import atomic_path

MESH_NAME = "Depth360 Mesh"
DISPLACE_MODIFIER = "Depth360 Displace"
PLATE_KEY, DEPTH_KEY, RESOLUTION_KEY = "depth360_plate_path", "depth360_depth_path", "depth360_resolution"
_EXR_MAGIC, _EXR_HALF, _EXR_FLOAT, _EXR_ZIP, _ZIP_LINES = 20000630, 1, 2, 3, 16


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


def exr_channel_types(path: str | os.PathLike) -> list[int] | None:
    """The pixel types of an OpenEXR file's channels (0 uint, 1 half, 2 float), read from its
    header; None if the file is not an OpenEXR file (whatever its name says)."""
    try:
        with open(path, "rb") as file:
            header = file.read(1 << 16)
        if len(header) < 8 or struct.unpack_from("<i", header)[0] != _EXR_MAGIC:
            return None
        position = 8
        while header[position] != 0:  # attributes: name, type, size, value; an empty name ends them
            name_end = header.index(b"\0", position)
            type_end = header.index(b"\0", name_end + 1)
            (size,) = struct.unpack_from("<i", header, type_end + 1)
            if header[position:name_end] == b"channels":
                return _channel_types(header[type_end + 5:type_end + 5 + size])
            position = type_end + 5 + size
    except (OSError, ValueError, IndexError, struct.error):
        return None
    return None


def _channel_types(chlist: bytes) -> list[int]:
    types, position = [], 0
    while position < len(chlist) and chlist[position] != 0:  # name, type, linear, 3 reserved, x/y sampling
        name_end = chlist.index(b"\0", position)
        types.append(struct.unpack_from("<i", chlist, name_end + 1)[0])
        position = name_end + 17
    return types


def is_float_exr(path: str | os.PathLike) -> bool:
    """Whether `path` is an OpenEXR file whose channels all hold floats (half or float)."""
    types = exr_channel_types(path)
    return bool(types) and all(kind in (_EXR_HALF, _EXR_FLOAT) for kind in types)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def painted_depth_target(obj: bpy.types.Object, image: bpy.types.Image) -> Path:
    """The file Save Painted Depth may write: the depth recorded on the mesh (for a sequence,
    its frame the canvas shows). CompositingInputError when the canvas is another image (the
    plate, say) or the depth file is not a float OpenEXR file: nothing else is ever written."""
    footage = resolve_footage(obj[DEPTH_KEY])
    frames = [footage.path] if footage.source != "SEQUENCE" else \
        [footage.frame_path(number) for number in range(1, footage.frame_count + 1)]
    canvas = Path(bpy.path.abspath(image.filepath_raw)) if image.filepath_raw else None
    target = next((frame for frame in frames if canvas is not None and _same_file(canvas, frame)), None)
    if target is None:
        raise CompositingInputError(
            f"The paint canvas {image.name!r} ({canvas or 'not a file'}) is not the depth of {obj.name} "
            f"({footage.path}); nothing was saved. Start Paint Depth again to paint the depth")
    if not is_float_exr(target):
        raise CompositingInputError(
            f"{target}: not a float OpenEXR file; Save Painted Depth writes only into an OpenEXR depth "
            "file, nothing was saved")
    return target


def _put_back(target: Path, previous: bytes | None, backup: Path | None) -> None:
    """Undo a save: the target's previous bytes (None: it was not changed), no new backup."""
    if previous is not None:
        with atomic_path(target) as temporary:
            Path(temporary).write_bytes(previous)
    if backup is not None:
        backup.unlink(missing_ok=True)


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
            with scene_transaction(scene):  # a mesh built for a canvas that then fails is removed
                obj, footage, image = self._open(scene, obj, depth_path)
        except CompositingInputError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        image.colorspace_settings.name = "Non-Color"
        obj[DEPTH_KEY] = str(footage.path)
        paint = scene.tool_settings.image_paint
        paint.mode = "IMAGE"
        paint.canvas = image
        obj.data.uv_layers.active = obj.data.uv_layers["UVMap"]
        _set_mode(context, obj, "TEXTURE_PAINT")
        frame_file = footage.frame_path(scene.frame_current)
        self.report({"INFO"}, f"Painting {frame_file.name} on {obj.name}: the brush value is metres")
        return {"FINISHED"}

    def _open(self, scene, obj, depth_path: str):
        """(mesh, depth footage, the current frame's float image); builds the mesh if there is none."""
        footage = resolve_footage(depth_path)
        if obj is None:
            plate = self.plate_path or scene.depth360.source_path
            if not plate:
                raise CompositingInputError("No depth mesh and no plate to build one from")
            obj = depth_mesh.build_mesh(plate, depth_path, scene=scene)
            obj[PLATE_KEY] = bpy.path.abspath(plate)
        frame_file = footage.frame_path(scene.frame_current)
        try:
            image = bpy.data.images.load(str(frame_file), check_existing=True)
        except RuntimeError as error:
            raise CompositingInputError(f"{frame_file}: Blender cannot read it ({error})") from None
        if not image.is_float:
            problem = "Blender cannot read an image from it" if image.size[0] == 0 else \
                "depth must be a float file (OpenEXR) to paint it"
            raise CompositingInputError(f"{frame_file}: {problem}")
        return obj, footage, image


class DEPTH360_OT_save_painted_depth(bpy.types.Operator):
    """Write the painted depth back to its OpenEXR file and rebuild the depth mesh from it"""

    bl_idname = "depth360.save_painted_depth"
    bl_label = "Save Painted Depth"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        obj = depth_mesh_object(context)
        image = context.scene.tool_settings.image_paint.canvas
        if obj is None or DEPTH_KEY not in obj or image is None:
            self.report({"ERROR"}, "Nothing to save: start with Paint Depth")
            return {"CANCELLED"}
        try:
            target = painted_depth_target(obj, image)
        except CompositingInputError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        values = image_depth(image)
        bad = int(np.count_nonzero(~np.isfinite(values) | (values <= 0)))
        if bad:
            self.report({"ERROR"}, f"{target}: the painted depth has {bad} pixels that are not positive "
                        "distances; paint distances in metres (above 0)")
            return {"CANCELLED"}
        backup = target.with_name(target.name.removesuffix(".exr") + ".unpainted.exr")
        made_backup = not backup.exists()
        try:
            previous = target.read_bytes()
            if made_backup:
                shutil.copyfile(target, backup)
            write_depth_exr(target, values)
        except OSError as error:
            _put_back(target, None, backup if made_backup else None)
            self.report({"ERROR"}, f"cannot write {target}: {error.strerror or error}")
            return {"CANCELLED"}
        return self._rebuild_or_put_back(context, obj, image, target, previous, backup if made_backup else None)

    def _rebuild_or_put_back(self, context, obj, image, target: Path, previous: bytes, backup: Path | None):
        """Rebuild the mesh from the saved file; if that fails, the file and the scene go back as they were."""
        rebuilt = False
        try:
            with scene_transaction(context.scene):
                obj = self._rebuild(context, obj)
            rebuilt = True
        except CompositingInputError as error:
            self.report({"ERROR"}, f"Nothing saved ({target.name} is unchanged): rebuilding "
                        f"{obj.name} from the painted depth failed: {error}")
            return {"CANCELLED"}
        finally:
            if not rebuilt:
                _put_back(target, previous, backup)
        image.reload()
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
