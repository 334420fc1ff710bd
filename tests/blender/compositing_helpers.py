"""Helpers for the compositing tests in real Blender: footage files, clean scenes, renders."""

from __future__ import annotations

import importlib
from pathlib import Path

import bpy
import numpy as np

PACKAGE = "bl_ext.user_default.depth360"


def builders(module: str):
    """A module of the installed extension's `compositing` package."""
    return importlib.import_module(f"{PACKAGE}.compositing.{module}")


def equirect():
    """The installed extension's equirect convention module (this env may lack `depth360`)."""
    return importlib.import_module(f"{PACKAGE}.estimators.panorama.equirect")


def _save(array: np.ndarray, path: Path, float_buffer: bool, file_format: str) -> Path:
    height, width = array.shape[:2]
    rgba = np.ones((height, width, 4), np.float32)
    rgba[..., :3] = array if array.ndim == 3 else array[..., None]
    image = bpy.data.images.new("helper-write", width, height, alpha=True, float_buffer=float_buffer)
    if float_buffer:
        image.colorspace_settings.name = "Non-Color"  # write the values, not a colour transform
    image.pixels.foreach_set(rgba[::-1].ravel())
    image.filepath_raw = str(path)
    image.file_format = file_format
    image.save()
    bpy.data.images.remove(image)
    return Path(path)


def write_plate(path, rgb: np.ndarray) -> Path:
    """An 8-bit PNG of display-referred sRGB values [H, W, 3] in 0..1, top row first."""
    return _save(np.clip(rgb, 0.0, 1.0), path, False, "PNG")


def write_depth(path, distance: np.ndarray) -> Path:
    """A float OpenEXR of distances [H, W], top row first."""
    return _save(distance.astype(np.float32), path, True, "OPEN_EXR")


def write_8bit_depth(path, distance: np.ndarray) -> Path:
    """An 8-bit PNG depth (what the builders must refuse)."""
    return _save(np.clip(distance / distance.max(), 0, 1), path, False, "PNG")


DATA_KINDS = ("objects", "meshes", "materials", "images", "node_groups", "textures", "cameras", "worlds")


def datablock_counts() -> dict[str, int]:
    return {name: len(getattr(bpy.data, name)) for name in DATA_KINDS}


def compositor_state(scene) -> tuple:
    """Which compositor the scene uses and how many nodes it has (5.0: a node group; 4.x: use_nodes)."""
    if hasattr(scene, "compositing_node_group"):
        tree = scene.compositing_node_group
        return (tree.name, len(tree.nodes)) if tree is not None else (None, 0)
    tree = scene.node_tree
    return (scene.use_nodes, len(tree.nodes) if tree is not None else 0)


def scene_state(scene) -> dict:
    """What an operator that fails must leave as it was: the datablocks of every kind (by
    name), the render and colour settings, passes, cameras, compositor, canvas, selection."""
    state = {kind: sorted(block.name for block in getattr(bpy.data, kind)) for kind in DATA_KINDS}
    render, view = scene.render, scene.view_settings
    state["render"] = (render.engine, render.film_transparent, render.resolution_x, render.resolution_y,
                       render.resolution_percentage)
    state["view"] = (view.view_transform, view.look, round(view.exposure, 6), round(view.gamma, 6))
    state["passes"] = [(layer.name, layer.use_pass_z, layer.cycles.use_pass_shadow_catcher)
                       for layer in scene.view_layers]
    state["camera"] = scene.camera.name if scene.camera is not None else None
    state["cameras"] = [(obj.name, tuple(round(v, 6) for v in (*obj.location, *obj.rotation_euler)),
                         obj.data.type, obj.data.panorama_type)
                        for obj in bpy.data.objects if obj.type == "CAMERA"]
    state["compositor"] = compositor_state(scene)
    canvas = scene.tool_settings.image_paint.canvas
    state["canvas"] = canvas.name if canvas is not None else None
    state["linked"] = sorted(obj.name for obj in scene.collection.objects)
    state["image settings"] = [(image.name, image.colorspace_settings.name, image.source)
                               for image in bpy.data.images if image.source in ("FILE", "SEQUENCE", "MOVIE")]
    active = bpy.context.view_layer.objects.active
    state["active"] = active.name if active is not None else None
    state["selected"] = sorted(obj.name for obj in bpy.context.view_layer.objects if obj.select_get())
    return state


def reset_scene() -> bpy.types.Scene:
    """An empty scene: no objects, images, materials, node groups; compositor off; frame 1."""
    for collection in ("objects", "meshes", "materials", "images", "node_groups", "textures",
                       "cameras", "lights"):
        data = getattr(bpy.data, collection)
        for block in list(data):
            data.remove(block)
    scene = bpy.context.scene
    if hasattr(scene, "compositing_node_group"):
        scene.compositing_node_group = None
    else:
        scene.use_nodes = False
        if scene.node_tree is not None:  # 4.x: the scene's own tree cannot be removed, only emptied
            scene.node_tree.nodes.clear()
    scene.frame_set(1)
    scene.render.film_transparent = False
    scene.render.resolution_percentage = 100
    for view_layer in scene.view_layers:
        view_layer.cycles.use_pass_shadow_catcher = False
    return scene


def configure_render(scene, samples: int = 8, crisp: bool = False) -> None:
    """Tiny, fast Cycles CPU renders; `crisp`: a 0.01 px box filter (pixel-centre rays)."""
    scene.render.engine = "CYCLES"
    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = samples
    cycles.use_adaptive_sampling = False
    cycles.use_denoising = False
    cycles.seed = 0
    cycles.max_bounces = 2
    scene.render.dither_intensity = 0.0
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    if crisp:
        cycles.pixel_filter_type = "BOX"
        cycles.filter_width = 0.01


def render_composite(scene, path) -> np.ndarray:
    """Render (compositor included) to an 8-bit PNG; display sRGB [H, W, 3], top row first."""
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5.0+
        settings.media_type = "IMAGE"
    settings.file_format = "PNG"
    settings.color_mode = "RGB"
    settings.color_depth = "8"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path), check_existing=False)
    width, height = image.size
    pixels = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(height, width, -1)[::-1, :, :3].copy()


def add_sphere(scene, name, location, radius, colour, emission: bool) -> bpy.types.Object:
    """A smooth UV sphere with an emission (unlit) or diffuse material of `colour`."""
    mesh = bpy.data.meshes.new(name)
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    import bmesh

    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=48, v_segments=24, radius=radius)
    bm.to_mesh(mesh)
    bm.free()
    mesh.polygons.foreach_set("use_smooth", [True] * len(mesh.polygons))
    obj.location = location
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender 4.x
        material.use_nodes = True
    nodes = material.node_tree.nodes
    nodes.clear()
    shader = nodes.new("ShaderNodeEmission" if emission else "ShaderNodeBsdfDiffuse")
    shader.inputs["Color"].default_value = (*colour, 1.0)
    output = nodes.new("ShaderNodeOutputMaterial")
    material.node_tree.links.new(shader.outputs[0], output.inputs["Surface"])
    mesh.materials.append(material)
    return obj


def ray_sphere_distance(rays: np.ndarray, centre, radius: float) -> np.ndarray:
    """Distance along unit `rays` [..., 3] from the origin to a sphere (+inf where missed)."""
    centre = np.asarray(centre, np.float64)
    b = rays @ centre
    disc = b * b - (centre @ centre - radius * radius)
    t = b - np.sqrt(np.maximum(disc, 0.0))
    return np.where((disc > 0) & (t > 0), t, np.inf)


def segment_hits_sphere(points: np.ndarray, target, centre, radius: float) -> np.ndarray:
    """Whether the segment from each point [..., 3] to `target` passes through the sphere."""
    target, centre = np.asarray(target, np.float64), np.asarray(centre, np.float64)
    direction = target - points
    length = np.linalg.norm(direction, axis=-1, keepdims=True)
    direction = direction / length
    to_centre = centre - points
    along = np.clip(np.sum(to_centre * direction, -1), 0.0, length[..., 0])
    closest = points + direction * along[..., None]
    return np.linalg.norm(closest - centre, axis=-1) < radius


def write_footage(folder, truth):
    """A ground-truth render as a plate PNG and a distance EXR in `folder`; their paths."""
    return (write_plate(folder / "plate.png", truth.rgb),
            write_depth(folder / "depth.exr", truth.distance))
