"""The 360 depth mesh: the real scene around a panoramic camera, rebuilt from its depth.

The mesh is a UV-sphere-like grid over the equirect image (DESIGN.md convention, which
is Blender's equirectangular camera rotated (90, 0, -90) degrees): `rows x cols`
vertices on the rays of pixel centres, one vertex at each pole, longitude wrapping
(column cols-1 joins column 0). UVs are the pixel centres of the plate, so the plate
maps without mirroring. Two methods:

- ``"vertices"``: each vertex sits at its pixel's distance along its ray (one frame,
  baked), and faces across depth discontinuities are removed. Where the engine's mask
  file lies beside the distance file (`mask_path`), its 0 pixels (sky, unseen) keep
  their far distance, a far dome, and no face joins them to the real scene.
- ``"displace"``: the classic form, a unit sphere with a Displace modifier reading the
  depth image by UV; a vertex moves to ``1 + (depth - midlevel) * strength`` along its
  outward normal, so the defaults (strength 1, midlevel 1) give the metric distance of a
  distance EXR. A depth sequence plays frame by frame.

The object sits at `location` (the camera centre); a panoramic camera named
"Depth360 Camera" is created or reused there and made the scene camera.

VR180 footage (DESIGN.md: each eye a half equirect, 180 x 180 degrees, square, centre along
+X) is recognised by its square depth: the mesh is then the half sphere in front, a
``rows x cols`` grid with no wrap and no pole vertices, and the camera is Blender's
equirect camera limited to longitude and latitude +-90 degrees (`field_of_view`). Its
depth belongs to the left eye: put `location` at the left eye.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import bpy
import numpy as np

from ..estimators.panorama import equirect
from .image_data import (
    CompositingInputError,
    load_plate_and_depth,
    read_depth_frame,
    sync_image_user,
)
from .materials import make_shadow_catcher_material, plate_material
from .scene_transaction import scene_transaction

CAMERA_NAME = "Depth360 Camera"
CAMERA_ROTATION = (math.pi / 2, 0.0, -math.pi / 2)  # DESIGN.md: equirect world frame
DEFAULT_RESOLUTION = (256, 512)


FIELDS = ("360", "180")


def field_of_view(height: int, width: int) -> str:
    """"180" for a VR180 half equirect (square), else "360" (an equirect image, W = 2H)."""
    return "180" if width == height else "360"


def grid_pixels(height: int, width: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel row and column (integers) of each vertex ring and meridian: evenly spread centres."""
    pixel_rows = np.floor((np.arange(rows) + 0.5) * height / rows).astype(np.int64)
    pixel_cols = np.floor((np.arange(cols) + 0.5) * width / cols).astype(np.int64)
    return pixel_rows, pixel_cols


def grid_faces(rows: int, cols: int, *, inward: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces of the sphere grid: (corner vertex indices [F, 4], corner (ring, meridian) [F, 4, 2], sizes [F]).

    Grid vertex (r, c) has index r * cols + c; the north pole is rows * cols, the south
    pole rows * cols + 1. Pole faces are triangles (their fourth corner repeats the
    pole and is dropped by `sizes`). Corner meridians run 0..cols (cols is column 0
    seen from the west) so UVs can wrap without a seam. Inward faces look at the centre.
    """
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols), indexing="ij")
    r, c = r.ravel(), c.ravel()
    quad_rc = np.stack(
        [np.stack([r, c], -1), np.stack([r + 1, c], -1),
         np.stack([r + 1, c + 1], -1), np.stack([r, c + 1], -1)], axis=1,
    )
    ring = np.arange(cols)
    north_rc = np.stack(
        [np.stack([np.full(cols, -1), ring], -1), np.stack([np.zeros(cols, int), ring], -1),
         np.stack([np.zeros(cols, int), ring + 1], -1), np.stack([np.full(cols, -1), ring], -1)], axis=1,
    )
    last = np.full(cols, rows - 1)
    south_rc = np.stack(
        [np.stack([last, ring], -1), np.stack([np.full(cols, rows), ring], -1),
         np.stack([last, ring + 1], -1), np.stack([last, ring], -1)], axis=1,
    )
    corners_rc = np.concatenate([quad_rc, north_rc, south_rc])
    sizes = np.concatenate([np.full(len(quad_rc), 4), np.full(2 * cols, 3)])
    index = corners_rc[..., 0] * cols + corners_rc[..., 1] % cols
    index = np.where(corners_rc[..., 0] < 0, rows * cols, index)
    index = np.where(corners_rc[..., 0] >= rows, rows * cols + 1, index)
    if not inward:  # reverse the winding of the used corners
        quads = slice(0, len(quad_rc))
        index[quads], corners_rc[quads] = index[quads, ::-1], corners_rc[quads, ::-1]
        tris = slice(len(quad_rc), None)
        index[tris, :3], corners_rc[tris, :3] = index[tris, 2::-1], corners_rc[tris, 2::-1]
    return index, corners_rc, sizes


def grid_faces_180(rows: int, cols: int, *, inward: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces of the half-sphere grid of VR180 (no wrap, no poles), as `grid_faces` gives them."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    r, c = r.ravel(), c.ravel()
    corners_rc = np.stack(
        [np.stack([r, c], -1), np.stack([r + 1, c], -1),
         np.stack([r + 1, c + 1], -1), np.stack([r, c + 1], -1)], axis=1,
    )
    if not inward:
        corners_rc = corners_rc[:, ::-1]
    index = corners_rc[..., 0] * cols + corners_rc[..., 1]
    return index, corners_rc, np.full(len(corners_rc), 4)


def _vertex_rays(height: int, width: int, rows: int, cols: int, field: str = "360") -> np.ndarray:
    pixel_rows, pixel_cols = grid_pixels(height, width, rows, cols)
    if field == "180":  # the middle half of a 2W-wide equirect: the same rays
        rays = equirect.ray_directions(height, 2 * width)[pixel_rows][:, pixel_cols + width // 2]
        return rays.reshape(-1, 3).astype(np.float32)
    rays = equirect.ray_directions(height, width)[pixel_rows][:, pixel_cols].reshape(-1, 3)
    poles = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]], dtype=np.float32)
    return np.concatenate([rays, poles]).astype(np.float32)


def _corner_uvs(corners_rc, height, width, rows, cols, wrap: bool = True) -> np.ndarray:
    pixel_rows, pixel_cols = grid_pixels(height, width, rows, cols)
    u_of_col = np.append(pixel_cols + 0.5, pixel_cols[0] + 0.5 + (width if wrap else 0)) / width
    v_of_row = 1.0 - (pixel_rows + 0.5) / height
    ring, meridian = corners_rc[..., 0], corners_rc[..., 1]
    u = u_of_col[meridian]
    v = v_of_row[np.clip(ring, 0, rows - 1)]
    # A pole corner takes the middle longitude of its triangle and the centre of the
    # image's first (last) row: at v = 1 (0) a repeating texture would blend both edges.
    pole = (ring < 0) | (ring >= rows)
    u = np.where(pole, (u_of_col[meridian] + u_of_col[np.minimum(meridian + 1, cols)]) / 2, u)
    v = np.where(ring < 0, 1.0 - 0.5 / height, np.where(ring >= rows, 0.5 / height, v))
    return np.stack([u, v], -1).astype(np.float32)


def discontinuous_faces(distance: np.ndarray, index: np.ndarray, sizes: np.ndarray, threshold: float) -> np.ndarray:
    """Mask of faces whose corner distances differ by more than `threshold` (relative: max/min - 1)."""
    d = distance[index]
    d = np.where(np.arange(4) < sizes[:, None], d, d[:, :1])
    near, far = d.min(axis=1), d.max(axis=1)
    return far > near * (1.0 + threshold)


def mixed_faces(infinite: np.ndarray, index: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Mask of faces with corners both at infinity (sky, off the mask) and on real surfaces."""
    flags = infinite[index]
    flags = np.where(np.arange(4) < sizes[:, None], flags, flags[:, :1])
    return flags.any(axis=1) & ~flags.all(axis=1)


def mask_path(depth_path: Path) -> Path:
    """The engine's validity mask beside a distance file: photo.distance.exr -> photo.mask.exr,
    distance_00001.exr -> mask_00001.exr."""
    name = depth_path.name
    if ".distance." in name:
        return depth_path.with_name(name.replace(".distance.", ".mask.", 1))
    return depth_path.with_name(name.replace("distance", "mask", 1))


def _infinite_vertices(footage, frame: int, shape, pixel_rows, pixel_cols, field: str = "360") -> np.ndarray | None:
    """Per vertex (360: poles last): off the engine's mask (sky, unseen); None without a mask file."""
    from .image_data import Footage

    path = mask_path(footage.frame_path(frame))
    if path == footage.frame_path(frame) or not path.is_file():
        return None
    mask = read_depth_frame(Footage(path, "FILE"), 1)
    if mask.shape != shape:
        return None
    grid = mask[pixel_rows][:, pixel_cols] < 0.5
    if field == "180":
        return grid.ravel()
    return np.concatenate([grid.ravel(), [grid[0].mean() > 0.5, grid[-1].mean() > 0.5]])


def _new_mesh(name, positions, index, sizes, uvs) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new(name)
    used = np.arange(4)[None, :] < sizes[:, None]
    loop_vertices = index[used].astype(np.int32)
    mesh.vertices.add(len(positions))
    mesh.vertices.foreach_set("co", positions.astype(np.float32).ravel())
    mesh.loops.add(len(loop_vertices))
    mesh.loops.foreach_set("vertex_index", loop_vertices)
    mesh.polygons.add(len(sizes))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
    mesh.polygons.foreach_set("loop_start", starts)
    mesh.polygons.foreach_set("loop_total", sizes.astype(np.int32))
    uv_layer = mesh.uv_layers.new(name="UVMap")
    uv_layer.data.foreach_set("uv", uvs[used].ravel())
    mesh.update()
    mesh.validate()
    return mesh


def set_field_of_view(camera_data: bpy.types.Camera, field: str = "360") -> None:
    """Limit an equirect panoramic camera to the half sphere in front ("180": longitude and latitude
    +-90 degrees, VR180) or open it to the whole sphere ("360")."""
    if field not in FIELDS:
        raise CompositingInputError(f"field of view must be one of {', '.join(FIELDS)}, got {field!r}")
    half = math.pi / 2
    longitude = half if field == "180" else math.pi
    camera_data.longitude_min, camera_data.longitude_max = -longitude, longitude
    camera_data.latitude_min, camera_data.latitude_max = -half, half


def ensure_panoramic_camera(scene: bpy.types.Scene, location, field: str = "360") -> bpy.types.Object:
    """The "Depth360 Camera" (created if missing): equirect panoramic over `field` ("360", or "180"
    for VR180), at `location`, the scene camera."""
    camera = bpy.data.objects.get(CAMERA_NAME)
    if camera is None or camera.type != "CAMERA":
        camera = bpy.data.objects.new(CAMERA_NAME, bpy.data.cameras.new(CAMERA_NAME))
    if camera.name not in scene.collection.all_objects:
        scene.collection.objects.link(camera)
    camera.data.type = "PANO"
    camera.data.panorama_type = "EQUIRECTANGULAR"
    set_field_of_view(camera.data, field)
    camera.location = location
    camera.rotation_mode = "XYZ"
    camera.rotation_euler = CAMERA_ROTATION
    scene.camera = camera
    return camera


def build_mesh(
    image_path,
    depth_path,
    *,
    name: str = "Depth360 Mesh",
    resolution: tuple[int, int] | None = None,
    discontinuity: float | None = 0.1,
    method: Literal["vertices", "displace"] = "vertices",
    strength: float = 1.0,
    midlevel: float = 1.0,
    location=(0.0, 0.0, 0.0),
    frame: int | None = None,
    scene: bpy.types.Scene | None = None,
) -> bpy.types.Object:
    """Build the 360 mesh of the real scene from a plate and its distance file; returns the object.

    `resolution` is (rows, cols) of the vertex grid, at most the depth's size (default
    min(depth size, 256 x 512)). `discontinuity`: faces whose corner distances differ by
    more than this fraction are removed (None: keep all; "vertices" only). `frame`: which
    frame of a depth sequence the "vertices" method bakes (default: the scene's current
    frame). A square depth is VR180: the mesh covers the half sphere in front and the camera
    is limited to 180 degrees. Raises CompositingInputError (a ValueError) and leaves the
    scene as it was.
    """
    if method not in ("vertices", "displace"):
        raise CompositingInputError(f"method must be 'vertices' or 'displace', got {method!r}")
    scene = scene or bpy.context.scene
    with scene_transaction(scene):  # a frame checked after the images were loaded may fail
        return _build_mesh(image_path, depth_path, name=name, resolution=resolution,
                           discontinuity=discontinuity, method=method, strength=strength,
                           midlevel=midlevel, location=location, frame=frame, scene=scene)


def _build_mesh(image_path, depth_path, *, name, resolution, discontinuity, method, strength,
                midlevel, location, frame, scene) -> bpy.types.Object:
    plate, depth = load_plate_and_depth(image_path, depth_path)
    depth_w, depth_h = depth.width, depth.height
    field = field_of_view(depth_h, depth_w)
    rows, cols = resolution or (min(DEFAULT_RESOLUTION[0], depth_h), min(DEFAULT_RESOLUTION[1], depth_w))
    if not (2 <= rows <= depth_h and 3 <= cols <= depth_w):
        raise CompositingInputError(
            f"{depth.footage.path}: mesh resolution {rows}x{cols} must be within 2x3 and the depth size {depth_h}x{depth_w}"
        )
    distance = infinite = None
    if method == "vertices":
        number = scene.frame_current if frame is None else frame
        values = read_depth_frame(depth.footage, number)
        if not np.isfinite(values).all() or (values <= 0).any():
            raise CompositingInputError(f"{depth.footage.path}: depth holds non-finite or non-positive values")
        pixel_rows, pixel_cols = grid_pixels(depth_h, depth_w, rows, cols)
        grid = values[pixel_rows][:, pixel_cols]
        distance = grid.ravel() if field == "180" else np.concatenate(
            [grid.ravel(), [np.median(grid[0]), np.median(grid[-1])]])
        infinite = _infinite_vertices(depth.footage, number, values.shape, pixel_rows, pixel_cols, field)

    faces = grid_faces_180 if field == "180" else grid_faces
    index, corners_rc, sizes = faces(rows, cols, inward=method == "vertices")
    rays = _vertex_rays(depth_h, depth_w, rows, cols, field)
    if method == "vertices":
        positions = rays * distance[:, None]
        keep = np.ones(len(sizes), bool)
        if discontinuity is not None:
            keep &= ~discontinuous_faces(distance, index, sizes, discontinuity)
        if infinite is not None:  # the sky stays a far dome, never joined to the real scene
            keep &= ~mixed_faces(infinite, index, sizes)
        index, corners_rc, sizes = index[keep], corners_rc[keep], sizes[keep]
    else:
        positions = rays
    uvs = _corner_uvs(corners_rc, depth_h, depth_w, rows, cols, wrap=field == "360")
    mesh = _new_mesh(name, positions, index, sizes, uvs)
    mesh.materials.append(plate_material(f"{name} Plate", plate.image, plate.footage))

    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    scene.collection.objects.link(obj)
    if method == "displace":
        texture = bpy.data.textures.new(f"{name} Depth", type="IMAGE")
        texture.image = depth.image
        texture.extension = "REPEAT"
        sync_image_user(texture.image_user, depth.image, depth.footage)
        modifier = obj.modifiers.new("Depth360 Displace", "DISPLACE")
        modifier.texture = texture
        modifier.texture_coords = "UV"
        modifier.uv_layer = "UVMap"
        modifier.direction = "NORMAL"
        modifier.strength = strength
        modifier.mid_level = midlevel
    ensure_panoramic_camera(scene, obj.location, field)
    return obj


def shadow_catcher(mesh_object: bpy.types.Object, scene: bpy.types.Scene | None = None) -> None:
    """Make the depth mesh a Cycles shadow catcher so virtual objects shadow the real surfaces.

    Sets `is_shadow_catcher`, a transparent film and the view layer's Shadow Catcher
    pass (the compositor multiplies the plate by it, see `compositor_tree`), and gives
    the mesh's plate material a diffuse surface for camera rays.
    """
    scene = scene or bpy.context.scene
    if mesh_object.type != "MESH":
        raise CompositingInputError(f"{mesh_object.name}: a shadow catcher must be a mesh object")
    mesh_object.is_shadow_catcher = True
    scene.render.engine = "CYCLES"
    scene.render.film_transparent = True
    for view_layer in scene.view_layers:
        view_layer.cycles.use_pass_shadow_catcher = True
    for material in mesh_object.data.materials:
        if material is not None and material.node_tree is not None and "Depth360 Plate" in material.node_tree.nodes:
            make_shadow_catcher_material(material)
