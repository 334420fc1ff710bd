"""Named 360 test scenes, built inside Blender (`bpy`) for Cycles ground-truth renders.

Every scene has an equirectangular panoramic camera named ``camera`` at the origin,
rotated (90, 0, -90) degrees XYZ Euler, so its image follows the convention of DESIGN.md
(centre column +X, u = 0.25 +Y, top row +Z). Every object gets its own ``pass_index``
(1, 2, ... in creation order; 0 is the background) and a descriptive name. Scenes are
deterministic: procedural textures, and geometry either fixed or drawn from a seeded
generator (``outdoor``: every seed is another layout, the same one every time).

Scenes (``build(name, **params)``):

``sphere`` (``radius=3.0``)
    The camera inside a UV sphere of ``radius`` metres centred on the camera, with an
    emissive procedural texture that depends on the direction only (the same image for
    every radius). Unlit: emission only, so the image has no sampling noise.
``markers`` (``radius=5.0``)
    ``sphere`` plus four small emissive spheres (radius ``MARKER_RADIUS``) at
    ``MARKER_POSITIONS``: ``marker+X`` 2.0 m along +X (red), ``marker+Y`` 2.5 m along +Y
    (green), ``marker+Z`` 2.0 m up (blue), ``marker-X`` 3.0 m along -X (yellow; it sits
    exactly on the 0/360 degree wrap column).
``room`` (``sky=False``)
    A closed 9 x 7.5 x 2.8 m room (x -4..5, y -3.5..4, z -1.5..1.3: the camera is 1.5 m
    above the floor) with richly textured diffuse surfaces (checker x noise x voronoi in
    world space, so stereo matching has texture everywhere), lit by a point light of
    radius 0 (hard shadows, no light-sampling noise) plus a weak emissive fill. Boxes,
    cylinders and a sphere stand at 1-6 m, giving real depth discontinuities;
    ``box_wrap`` straddles the -X wrap column. ``sky=True`` leaves out the ceiling: the top
    of the image then shows the world background (a sky gradient at infinite distance).
``room_moving`` (``sky=False``, ``speed=0.25``)
    ``room`` plus ``mover``, a sphere of radius 0.35 m at x = 1.6 m, z = -0.2 m whose
    y = -1.5 + speed * (frame - 1) metres (a driver on the frame number, so any frame is
    defined); the camera stays put.
``outdoor`` (``seed=0``, ``ground="textured"``, ``mover=False``)
    Open ground to the horizon under a sky: a 600 x 600 m ground plane 1.6 m below the
    camera (``ground="textured"``: a weak large-scale texture; ``"plain"``: one flat
    colour), 8-15 textured objects (boxes, cylinders, spheres, posts) at 2-40 m in
    random directions drawn from ``seed``, a sun with hard shadows, and the sky gradient
    at infinite distance over the upper half of the frame (about 45% of the pixels).
    ``mover``: a ball rolls past at about 5 m (the camera stays put).
``room_walk`` (``frames=24``) and ``outdoor_walk`` (``seed=0``, ``ground="textured"``, ``frames=24``)
    The camera moves as a handheld 360 camera does: over frames 1..``frames`` it walks
    ``WALK_DISTANCE`` metres (room: 1.3 m; outdoor: 1.6 m) in a straight line and turns
    ``WALK_YAW_DEG`` (30 deg) about the vertical, with pitch and roll swaying within
    +-``WALK_SWAY_DEG`` (3 deg); objects move too (``room``'s ``mover``; outdoors a ball
    rolling past at about 5 m). The camera hangs from an empty ``rig`` whose world pose
    is the camera pose of the frame: a direction d of the frame's equirect image
    (DESIGN.md) points along R d in the world, from the rig's location; ``scene_camera``
    returns both (the renderer records them per frame).
``room_random`` (``seed=0``, ``texture="mixed"``)
    Seeded random rooms 6-16 m a side with fine, coarse and weak textures and objects
    0.5-10 m away (random_rooms.py, which documents them).
"""

from __future__ import annotations

import inspect
import math
import random
import warnings
from collections.abc import Callable

import bpy

CAMERA_NAME = "camera"
CAMERA_ROTATION_DEG = (90.0, 0.0, -90.0)
MARKER_RADIUS = 0.25
MARKER_POSITIONS = {
    "marker+X": (2.0, 0.0, 0.0),
    "marker+Y": (0.0, 2.5, 0.0),
    "marker+Z": (0.0, 0.0, 2.0),
    "marker-X": (-3.0, 0.0, 0.0),
}
MARKER_COLOURS = {
    "marker+X": (1.0, 0.05, 0.05),
    "marker+Y": (0.05, 1.0, 0.05),
    "marker+Z": (0.05, 0.05, 1.0),
    "marker-X": (1.0, 1.0, 0.05),
}
ROOM_MIN = (-4.0, -3.5, -1.5)
ROOM_MAX = (5.0, 4.0, 1.3)
WALL_THICKNESS = 0.1
MOVER_START = (1.6, -1.5, -0.2)
MOVER_RADIUS = 0.35
# Sphere tessellation: the faces of a UV sphere lie inside the true sphere by at most
# 1 - cos(pi / segments) * cos(pi / (2 * rings)), 0.04 % for 192 x 96.
SPHERE_SEGMENTS = 192
SPHERE_RINGS = 96


class _SceneBuilder:
    """Adds objects to the current scene, numbering their pass indices 1, 2, ..."""

    def __init__(self) -> None:
        self.scene = bpy.context.scene
        self.next_index = 1

    def link(self, obj: bpy.types.Object, material: bpy.types.Material | None) -> bpy.types.Object:
        if material is not None:
            obj.data.materials.append(material)
        obj.pass_index = self.next_index
        self.next_index += 1
        return obj

    def _added(self, name: str, material, op: Callable, **kwargs) -> bpy.types.Object:
        op(**kwargs)
        obj = bpy.context.object
        obj.name = name
        obj.data.name = name
        return self.link(obj, material)

    def sphere(self, name, material, location, radius, segments=64, rings=32):
        obj = self._added(
            name, material, bpy.ops.mesh.primitive_uv_sphere_add,
            radius=radius, segments=segments, ring_count=rings, location=location,
        )
        obj.data.polygons.foreach_set("use_smooth", [True] * len(obj.data.polygons))
        return obj

    def box(self, name, material, location, size):
        obj = self._added(name, material, bpy.ops.mesh.primitive_cube_add, size=1.0, location=location)
        obj.scale = size
        return obj

    def cylinder(self, name, material, location, radius, height):
        return self._added(
            name, material, bpy.ops.mesh.primitive_cylinder_add,
            vertices=48, radius=radius, depth=height, location=location,
        )


def _node_tree(idblock) -> bpy.types.NodeTree:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if idblock.node_tree is None or not getattr(idblock, "use_nodes", True):
            idblock.use_nodes = True
    tree = idblock.node_tree
    tree.nodes.clear()
    return tree


def _add_ray_aov(tree: bpy.types.NodeTree) -> None:
    """AOV ``ray``: the unit direction of the camera ray that hit this point (-Incoming)."""
    geometry = tree.nodes.new("ShaderNodeNewGeometry")
    negate = tree.nodes.new("ShaderNodeVectorMath")
    negate.operation = "SCALE"
    negate.inputs["Scale"].default_value = -1.0
    aov = tree.nodes.new("ShaderNodeOutputAOV")
    aov.aov_name = "ray"
    tree.links.new(geometry.outputs["Incoming"], negate.inputs[0])
    tree.links.new(negate.outputs["Vector"], aov.inputs["Color"])


def _texture(tree, coordinates, scale: float, colour_a, colour_b):
    """Colour socket: checker(colour_a, colour_b) x (0.7 fine noise + 0.5 voronoi cell colour)."""
    checker = tree.nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = scale * 0.25
    checker.inputs["Color1"].default_value = (*colour_a, 1.0)
    checker.inputs["Color2"].default_value = (*colour_b, 1.0)
    noise = tree.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = scale * 3.0
    noise.inputs["Detail"].default_value = 2.0
    voronoi = tree.nodes.new("ShaderNodeTexVoronoi")
    voronoi.inputs["Scale"].default_value = scale * 0.7
    for node in (checker, noise, voronoi):
        tree.links.new(coordinates, node.inputs["Vector"])
    mix = tree.nodes.new("ShaderNodeVectorMath")
    mix.operation = "MULTIPLY_ADD"  # noise * 0.7 + voronoi * 0.5, via two steps
    mix.inputs[1].default_value = (0.7, 0.7, 0.7)
    # Noise "Fac" costs a third of "Color"; the voronoi cells bring the colour.
    tree.links.new(noise.outputs["Fac"], mix.inputs[0])
    half_voronoi = tree.nodes.new("ShaderNodeVectorMath")
    half_voronoi.operation = "SCALE"
    half_voronoi.inputs["Scale"].default_value = 0.5
    tree.links.new(voronoi.outputs["Color"], half_voronoi.inputs[0])
    tree.links.new(half_voronoi.outputs["Vector"], mix.inputs[2])
    product = tree.nodes.new("ShaderNodeVectorMath")
    product.operation = "MULTIPLY"
    tree.links.new(mix.outputs["Vector"], product.inputs[0])
    tree.links.new(checker.outputs["Color"], product.inputs[1])
    return product.outputs["Vector"]


def _direction_textured_emission(name: str) -> bpy.types.Material:
    """Emissive texture of the direction from the origin: independent of the sphere's size."""
    material = bpy.data.materials.new(name)
    tree = _node_tree(material)
    geometry = tree.nodes.new("ShaderNodeNewGeometry")
    direction = tree.nodes.new("ShaderNodeVectorMath")
    direction.operation = "NORMALIZE"
    tree.links.new(geometry.outputs["Position"], direction.inputs[0])
    colour = _texture(tree, direction.outputs["Vector"], 6.0, (0.9, 0.75, 0.5), (0.35, 0.5, 0.8))
    emission = tree.nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    tree.links.new(colour, emission.inputs["Color"])
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    _add_ray_aov(tree)
    return material


def _flat_emission(name: str, colour) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    tree = _node_tree(material)
    emission = tree.nodes.new("ShaderNodeEmission")
    emission.inputs["Color"].default_value = (*colour, 1.0)
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    _add_ray_aov(tree)
    return material


def _textured_diffuse(name: str, colour_a, colour_b, scale: float, fill: float = 0.2):
    """Diffuse world-space texture plus an emissive fill of `fill` times the same colour."""
    material = bpy.data.materials.new(name)
    tree = _node_tree(material)
    geometry = tree.nodes.new("ShaderNodeNewGeometry")
    colour = _texture(tree, geometry.outputs["Position"], scale, colour_a, colour_b)
    diffuse = tree.nodes.new("ShaderNodeBsdfDiffuse")
    tree.links.new(colour, diffuse.inputs["Color"])
    emission = tree.nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = fill
    tree.links.new(colour, emission.inputs["Color"])
    add = tree.nodes.new("ShaderNodeAddShader")
    tree.links.new(diffuse.outputs["BSDF"], add.inputs[0])
    tree.links.new(emission.outputs["Emission"], add.inputs[1])
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(add.outputs["Shader"], output.inputs["Surface"])
    _add_ray_aov(tree)
    return material


def _world(sky: bool) -> None:
    """Black world, or a sky gradient that is seen by the camera but lights nothing."""
    world = bpy.data.worlds.new("world")
    bpy.context.scene.world = world
    tree = _node_tree(world)
    background = tree.nodes.new("ShaderNodeBackground")
    output = tree.nodes.new("ShaderNodeOutputWorld")
    tree.links.new(background.outputs["Background"], output.inputs["Surface"])
    _add_ray_aov(tree)
    if not sky:
        background.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)
        return
    geometry = tree.nodes.new("ShaderNodeNewGeometry")
    up = tree.nodes.new("ShaderNodeSeparateXYZ")
    tree.links.new(geometry.outputs["Incoming"], up.inputs[0])
    gradient = tree.nodes.new("ShaderNodeValToRGB")
    gradient.color_ramp.elements[0].position = 0.0
    gradient.color_ramp.elements[0].color = (0.85, 0.9, 1.0, 1.0)
    gradient.color_ramp.elements[1].position = 1.0
    gradient.color_ramp.elements[1].color = (0.15, 0.35, 0.85, 1.0)
    # Incoming points back along the ray: its -z is the ray's elevation.
    elevation = tree.nodes.new("ShaderNodeMath")
    elevation.operation = "MULTIPLY"
    elevation.inputs[1].default_value = -1.0
    tree.links.new(up.outputs["Z"], elevation.inputs[0])
    tree.links.new(elevation.outputs["Value"], gradient.inputs["Fac"])
    tree.links.new(gradient.outputs["Color"], background.inputs["Color"])
    visibility = world.cycles_visibility
    visibility.diffuse = False
    visibility.glossy = False
    visibility.transmission = False
    visibility.scatter = False
    world.cycles.sampling_method = "NONE"


def _camera() -> None:
    data = bpy.data.cameras.new(CAMERA_NAME)
    data.type = "PANO"
    if hasattr(data, "panorama_type"):
        data.panorama_type = "EQUIRECTANGULAR"
    else:
        data.cycles.panorama_type = "EQUIRECTANGULAR"
    camera = bpy.data.objects.new(CAMERA_NAME, data)
    camera.rotation_euler = tuple(math.radians(a) for a in CAMERA_ROTATION_DEG)
    bpy.context.scene.collection.objects.link(camera)
    bpy.context.scene.camera = camera


def _sphere_scene(builder: _SceneBuilder, radius: float) -> None:
    if not radius > 0.0:
        raise ValueError(f"sphere radius must be positive, got {radius}")
    builder.sphere(
        "sphere", _direction_textured_emission("sphere"), (0.0, 0.0, 0.0), radius,
        SPHERE_SEGMENTS, SPHERE_RINGS,
    )
    _world(sky=False)


def build_sphere(builder: _SceneBuilder, radius: float = 3.0) -> None:
    _sphere_scene(builder, radius)


def build_markers(builder: _SceneBuilder, radius: float = 5.0) -> None:
    _sphere_scene(builder, radius)
    for name, position in MARKER_POSITIONS.items():
        builder.sphere(name, _flat_emission(name, MARKER_COLOURS[name]), position, MARKER_RADIUS)


def build_room(builder: _SceneBuilder, sky: bool = False) -> None:
    (x0, y0, z0), (x1, y1, z1) = ROOM_MIN, ROOM_MAX
    t = WALL_THICKNESS
    cx, cy, cz = (x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2
    sx, sy, sz = x1 - x0 + 2 * t, y1 - y0 + 2 * t, z1 - z0 + 2 * t
    surfaces = {
        "floor": ((cx, cy, z0 - t / 2), (sx, sy, t), (0.55, 0.4, 0.3), (0.25, 0.2, 0.15), 3.0),
        "ceiling": ((cx, cy, z1 + t / 2), (sx, sy, t), (0.7, 0.7, 0.65), (0.45, 0.45, 0.5), 2.5),
        "wall+X": ((x1 + t / 2, cy, cz), (t, sy, sz), (0.8, 0.6, 0.5), (0.4, 0.3, 0.5), 2.2),
        "wall-X": ((x0 - t / 2, cy, cz), (t, sy, sz), (0.5, 0.7, 0.6), (0.3, 0.4, 0.3), 2.6),
        "wall+Y": ((cx, y1 + t / 2, cz), (sx, t, sz), (0.6, 0.6, 0.8), (0.3, 0.3, 0.45), 2.4),
        "wall-Y": ((cx, y0 - t / 2, cz), (sx, t, sz), (0.8, 0.75, 0.5), (0.45, 0.35, 0.3), 2.8),
    }
    for name, (location, size, colour_a, colour_b, scale) in surfaces.items():
        if sky and name == "ceiling":
            continue
        builder.box(name, _textured_diffuse(name, colour_a, colour_b, scale), location, size)

    def material(name, colour_a, colour_b, scale=7.0):
        return _textured_diffuse(name, colour_a, colour_b, scale)

    floor = z0
    builder.box("box_near", material("box_near", (0.9, 0.3, 0.2), (0.5, 0.15, 0.1)),
                (0.9, -0.6, floor + 0.25), (0.5, 0.5, 0.5))
    builder.cylinder("cylinder_near", material("cylinder_near", (0.2, 0.6, 0.9), (0.1, 0.3, 0.5)),
                     (0.0, 1.1, floor + 0.5), 0.15, 1.0)
    builder.box("box_x", material("box_x", (0.3, 0.8, 0.3), (0.15, 0.4, 0.2)),
                (2.2, 0.4, floor + 0.6), (0.8, 0.8, 1.2))
    builder.sphere("sphere_mid", material("sphere_mid", (0.9, 0.8, 0.2), (0.5, 0.3, 0.1)),
                   (1.0, 2.2, 0.2), 0.4)
    builder.box("box_wrap", material("box_wrap", (0.8, 0.3, 0.8), (0.4, 0.1, 0.4)),
                (-2.5, 0.0, floor + 0.8), (0.7, 0.7, 0.7))
    builder.box("shelf", material("shelf", (0.7, 0.5, 0.3), (0.3, 0.2, 0.1)),
                (-3.3, 3.0, floor + 1.0), (0.6, 1.4, 2.0))
    builder.box("box_far", material("box_far", (0.3, 0.7, 0.7), (0.1, 0.35, 0.4)),
                (4.2, -2.6, floor + 0.4), (0.8, 0.8, 0.8))
    builder.cylinder("pillar_far", material("pillar_far", (0.85, 0.85, 0.85), (0.3, 0.3, 0.3)),
                     (4.0, 3.0, (z0 + z1) / 2), 0.3, z1 - z0)
    builder.box("crate_back", material("crate_back", (0.6, 0.4, 0.9), (0.3, 0.2, 0.5)),
                (0.4, -3.0, floor + 0.35), (1.0, 0.6, 0.7))

    light_data = bpy.data.lights.new("light", "POINT")
    light_data.energy = 80.0
    light_data.shadow_soft_size = 0.0
    light = bpy.data.objects.new("light", light_data)
    light.location = (0.8, 0.5, z1 - 1.0)
    builder.scene.collection.objects.link(light)
    _world(sky=sky)


def build_room_moving(builder: _SceneBuilder, sky: bool = False, speed: float = 0.25) -> None:
    build_room(builder, sky=sky)
    mover = builder.sphere(
        "mover", _textured_diffuse("mover", (0.95, 0.5, 0.1), (0.2, 0.1, 0.6), 9.0),
        MOVER_START, MOVER_RADIUS,
    )
    driver = mover.driver_add("location", 1).driver
    driver.type = "SCRIPTED"
    # A simple expression: Blender evaluates it without running Python scripts.
    driver.expression = f"{MOVER_START[1]!r} + {float(speed)!r} * (frame - 1)"


WALK_YAW_DEG = 30.0
WALK_SWAY_DEG = 3.0
ROOM_WALK = ((-0.6, 0.35, 0.0), (0.6, -0.15, 0.05))  # start, end (m): 1.3 m, clear of every object
OUTDOOR_WALK = ((-0.8, 0.0, 0.0), (0.8, 0.1, 0.0))  # 1.6 m
RIG_NAME = "rig"


def _walk(builder: _SceneBuilder, frames: int, start, end) -> None:
    """Hang the camera from a rig that walks start -> end and turns over frames 1..`frames`."""
    if frames < 2:
        raise ValueError(f"a walk needs at least 2 frames, got {frames}")
    rig = bpy.data.objects.new(RIG_NAME, None)
    builder.scene.collection.objects.link(rig)
    camera = bpy.data.objects[CAMERA_NAME]
    camera.parent = rig
    progress = f"((frame - 1) / {float(frames - 1)!r})"
    for axis in range(3):
        driver = rig.driver_add("location", axis).driver
        driver.type = "SCRIPTED"
        driver.expression = f"{float(start[axis])!r} + {float(end[axis] - start[axis])!r} * {progress}"
    sway = math.radians(WALK_SWAY_DEG)
    yaw = math.radians(WALK_YAW_DEG)
    expressions = (  # roll, pitch (swaying at different rates), yaw (turning steadily)
        f"{sway!r} * sin(0.9 * (frame - 1))",
        f"{0.8 * sway!r} * sin(0.55 * (frame - 1) + 1.0)",
        f"{-yaw / 2!r} + {yaw!r} * {progress}",
    )
    for axis, expression in enumerate(expressions):
        driver = rig.driver_add("rotation_euler", axis).driver
        driver.type = "SCRIPTED"
        driver.expression = expression


def _moving_ball(builder: _SceneBuilder, start, velocity, radius: float) -> None:
    ball = builder.sphere("mover", _textured_diffuse("mover", (0.95, 0.5, 0.1), (0.2, 0.1, 0.6), 9.0 / radius),
                          start, radius)
    for axis in range(2):
        driver = ball.driver_add("location", axis).driver
        driver.type = "SCRIPTED"
        driver.expression = f"{float(start[axis])!r} + {float(velocity[axis])!r} * (frame - 1)"


def build_room_walk(builder: _SceneBuilder, frames: int = 24) -> None:
    build_room_moving(builder, speed=0.12)
    _walk(builder, frames, *ROOM_WALK)


def build_outdoor_walk(builder: _SceneBuilder, seed: int = 0, ground: str = "textured", frames: int = 24) -> None:
    build_outdoor(builder, seed=seed, ground=ground, mover=True)
    _walk(builder, frames, *OUTDOOR_WALK)


def scene_camera(scene: bpy.types.Scene) -> dict:
    """The camera pose of the current frame: `location` (m) and `rotation` (3 x 3, rows), such
    that a direction d of the equirect image points along rotation @ d in the world."""
    rig = scene.objects.get(RIG_NAME)
    if rig is None:
        return {"location": [0.0, 0.0, 0.0], "rotation": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]}
    depsgraph = bpy.context.evaluated_depsgraph_get()
    matrix = rig.evaluated_get(depsgraph).matrix_world
    return {"location": list(matrix.translation), "rotation": [list(row)[:3] for row in matrix.to_3x3()]}


OUTDOOR_EYE_HEIGHT = 1.6
OUTDOOR_GROUND_SIZE = 600.0


def _plain_diffuse(name: str, colour) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    tree = _node_tree(material)
    diffuse = tree.nodes.new("ShaderNodeBsdfDiffuse")
    diffuse.inputs["Color"].default_value = (*colour, 1.0)
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(diffuse.outputs["BSDF"], output.inputs["Surface"])
    _add_ray_aov(tree)
    return material


def _outdoor_object(builder: _SceneBuilder, rng: random.Random, number: int) -> None:
    """One object standing on the ground 2-40 m away in a random direction (log-uniform distance)."""
    distance = math.exp(rng.uniform(math.log(2.0), math.log(40.0)))
    azimuth = rng.uniform(0.0, 2.0 * math.pi)
    x, y = distance * math.cos(azimuth), distance * math.sin(azimuth)
    ground = -OUTDOOR_EYE_HEIGHT
    scale = 0.6 + 0.04 * distance  # far objects are larger, so they stay a few pixels wide
    hue = rng.random()
    colour_a = (0.4 + 0.5 * hue, 0.3 + 0.4 * rng.random(), 0.9 - 0.6 * hue)
    colour_b = tuple(0.45 * c for c in colour_a)
    material = _textured_diffuse(f"object{number}", colour_a, colour_b, 5.0 / scale, fill=0.05)
    kind = rng.choice(("box", "cylinder", "sphere", "post"))
    if kind == "box":
        size = (scale * rng.uniform(0.6, 1.6), scale * rng.uniform(0.6, 1.6), scale * rng.uniform(0.5, 2.0))
        builder.box(f"box{number}", material, (x, y, ground + size[2] / 2), size)
    elif kind == "cylinder":
        radius, height = scale * rng.uniform(0.2, 0.6), scale * rng.uniform(0.8, 2.5)
        builder.cylinder(f"cylinder{number}", material, (x, y, ground + height / 2), radius, height)
    elif kind == "sphere":
        radius = scale * rng.uniform(0.3, 0.8)
        builder.sphere(f"sphere{number}", material, (x, y, ground + radius), radius)
    else:
        height = scale * rng.uniform(2.0, 4.0)
        builder.cylinder(f"post{number}", material, (x, y, ground + height / 2), 0.08 * scale + 0.05, height)


def build_outdoor(builder: _SceneBuilder, seed: int = 0, ground: str = "textured", mover: bool = False) -> None:
    if ground not in ("textured", "plain"):
        raise ValueError(f"ground must be textured or plain, got {ground!r}")
    rng = random.Random(int(seed))
    size = OUTDOOR_GROUND_SIZE
    if ground == "plain":
        ground_material = _plain_diffuse("ground", (0.35, 0.33, 0.28))
    else:  # weak texture: low contrast, large cells
        ground_material = _textured_diffuse("ground", (0.42, 0.4, 0.32), (0.32, 0.31, 0.25), 0.6, fill=0.0)
    builder.box("ground", ground_material, (0.0, 0.0, -OUTDOOR_EYE_HEIGHT - 0.05), (size, size, 0.1))
    for number in range(rng.randint(8, 15)):
        _outdoor_object(builder, rng, number)
    sun_data = bpy.data.lights.new("sun", "SUN")
    sun_data.energy = 3.0
    sun_data.angle = 0.0  # hard shadows, no light-sampling noise
    sun = bpy.data.objects.new("sun", sun_data)
    sun.rotation_euler = (math.radians(rng.uniform(30.0, 55.0)), 0.0, rng.uniform(0.0, 2.0 * math.pi))
    builder.scene.collection.objects.link(sun)
    _world(sky=True)
    if mover:
        _moving_ball(builder, (4.0, -3.0, -OUTDOOR_EYE_HEIGHT + 0.5), (-0.05, 0.25), 0.5)


SCENES: dict[str, Callable[..., None]] = {
    "sphere": build_sphere,
    "markers": build_markers,
    "room": build_room,
    "room_moving": build_room_moving,
    "outdoor": build_outdoor,
    "room_walk": build_room_walk,
    "outdoor_walk": build_outdoor_walk,
}

from . import random_rooms  # noqa: E402  (its builders use this module's helpers)

SCENES.update(random_rooms.SCENES)


def build(name: str, **params) -> bpy.types.Scene:
    """Reset Blender to an empty file and build scene `name` with `params`; return the scene."""
    if name not in SCENES:
        raise ValueError(f"unknown ground-truth scene {name!r}; known: {', '.join(SCENES)}")
    try:
        inspect.signature(SCENES[name]).bind(None, **params)
    except TypeError as error:
        accepted = list(inspect.signature(SCENES[name]).parameters)[1:]
        raise ValueError(
            f"scene {name!r} takes parameters {accepted}, got {sorted(params)}: {error}"
        ) from None
    bpy.ops.wm.read_factory_settings(use_empty=True)
    builder = _SceneBuilder()
    _camera()
    SCENES[name](builder, **params)
    return builder.scene


def scene_objects(scene: bpy.types.Scene) -> list[dict]:
    """Name, pass index and world location (at the current frame) of every indexed object."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    rows = []
    for obj in scene.objects:
        if obj.type != "MESH":
            continue
        evaluated = obj.evaluated_get(depsgraph)
        rows.append({
            "name": obj.name,
            "index": obj.pass_index,
            "location": list(evaluated.matrix_world.translation),
        })
    return sorted(rows, key=lambda row: row["index"])
