"""Seeded random rooms for stereo ground truth (issue 14), built inside Blender (`bpy`).

``room_random`` (``seed=0``, ``texture="mixed"``)
    A closed box room whose floor plan is 6-16 m a side (each side drawn from ``seed``),
    2.5-3.6 m high, with the camera at a random spot at least 1.2 m from every wall and
    1.2-1.8 m above the floor. Every surface carries a world-space noise texture of one of
    three kinds: ``fine`` (cells of 2-4 cm, full contrast), ``coarse`` (cells of 25-50 cm
    with a little fine detail) and ``weak`` (cells of 10-30 cm at about a third of the
    contrast). ``texture="mixed"`` draws a kind per surface (at least one wall weak, at
    least one fine); ``"fine"``, ``"coarse"`` or ``"weak"`` gives every surface that kind.
    7-12 objects (boxes, cylinders, spheres, posts) stand on the floor or float, their
    nearest side 0.5-10 m from the camera (uniform, up to 0.6 m before the wall behind; off the
    camera), each textured fine or coarse. A radius-0 point light (hard shadows, no
    light-sampling noise) hangs under the ceiling, plus an emissive fill of 0.25.

The layout is a pure function of ``seed`` (Python's `random.Random`), so every seed is
another room and the same one every time. `layout(seed)` gives the drawn numbers without
Blender (tests report room sizes from it).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

TEXTURE_KINDS = ("fine", "coarse", "weak")
ROOM_SIDE = (6.0, 16.0)
ROOM_HEIGHT = (2.5, 3.6)
WALL_CLEARANCE = 1.2
EYE_HEIGHT = (1.2, 1.8)
OBJECT_DISTANCE = (0.5, 10.0)
WALLS = ("floor", "ceiling", "wall+X", "wall-X", "wall+Y", "wall-Y")


@dataclass(frozen=True)
class RoomObject:
    name: str
    kind: str  # box, cylinder, sphere, post
    centre: tuple[float, float, float]
    size: tuple[float, float, float]  # box: full extents; cylinder/post: (radius, radius, height); sphere: r, r, r
    texture: str
    colour: tuple[float, float, float]


@dataclass(frozen=True)
class RoomLayout:
    """The drawn room: bounds relative to the camera (at the origin), textures, objects."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    textures: dict
    colours: dict
    objects: tuple[RoomObject, ...]
    light: tuple[float, float, float]

    @property
    def size(self) -> tuple[float, float, float]:
        return tuple(h - lo for lo, h in zip(self.low, self.high, strict=True))


def _surface_textures(rng: random.Random, texture: str) -> dict:
    if texture != "mixed":
        if texture not in TEXTURE_KINDS:
            raise ValueError(f"texture must be mixed or one of {TEXTURE_KINDS}, got {texture!r}")
        return dict.fromkeys(WALLS, texture)
    kinds = {name: rng.choice(TEXTURE_KINDS) for name in WALLS}
    walls = [name for name in WALLS if name.startswith("wall")]
    if "weak" not in (kinds[w] for w in walls):
        kinds[rng.choice(walls)] = "weak"
    if "fine" not in kinds.values():
        kinds[rng.choice([n for n in WALLS if kinds[n] != "weak"])] = "fine"
    return kinds


def _colour(rng: random.Random) -> tuple[float, float, float]:
    hue = rng.random()
    return (0.35 + 0.5 * hue, 0.3 + 0.45 * rng.random(), 0.85 - 0.5 * hue)


def _inside(centre, half, low, high, margin=0.02) -> bool:
    """Inside the walls by `margin` (standing on the floor, under the ceiling)."""
    margins = (margin, margin, -1e-6)
    return all(lo + h + m <= c <= hi - h - m
               for c, h, lo, hi, m in zip(centre, half, low, high, margins, strict=True))


def _one_object(rng: random.Random, number: int, low, high) -> RoomObject | None:
    """An object whose nearest side is 0.5-10 m away, inside the room; None if it does not fit."""
    kind = rng.choice(("box", "box", "cylinder", "sphere", "post"))
    azimuth = rng.uniform(0.0, 2.0 * math.pi)
    cos_a, sin_a = math.cos(azimuth), math.sin(azimuth)
    wall = min((high[0] if cos_a > 0 else low[0]) / cos_a if abs(cos_a) > 1e-9 else math.inf,
               (high[1] if sin_a > 0 else low[1]) / sin_a if abs(sin_a) > 1e-9 else math.inf)
    top = min(OBJECT_DISTANCE[1], wall - 0.6)
    if top <= OBJECT_DISTANCE[0]:
        return None
    near = rng.uniform(OBJECT_DISTANCE[0], top)
    scale = 0.25 + 0.08 * near
    floor = low[2]
    if kind == "box":
        size = (scale * rng.uniform(0.8, 2.0), scale * rng.uniform(0.8, 2.0), scale * rng.uniform(0.8, 3.0))
        half = (size[0] / 2, size[1] / 2, size[2] / 2)
    elif kind == "cylinder":
        radius = scale * rng.uniform(0.3, 0.7)
        size = (radius, radius, scale * rng.uniform(1.0, 3.5))
        half = (radius, radius, size[2] / 2)
    elif kind == "sphere":
        radius = scale * rng.uniform(0.4, 0.9)
        size = half = (radius, radius, radius)
    else:  # a thin post from floor to ceiling
        radius = 0.03 + 0.02 * scale
        size = (radius, radius, high[2] - low[2] - 0.01)
        half = (radius, radius, size[2] / 2)
    reach = near + max(half[0], half[1])
    x, y = reach * cos_a, reach * sin_a
    if kind == "sphere" and rng.random() < 0.5:  # a floating ball, up to a little above eye height
        z = rng.uniform(-0.4, 0.8)
    elif kind == "post":
        z = (low[2] + high[2]) / 2
    else:
        z = floor + half[2]
    if not _inside((x, y, z), half, low, high):
        return None
    if abs(x) < half[0] + 0.3 and abs(y) < half[1] + 0.3 and abs(z) < half[2] + 0.3:
        return None  # around the camera
    texture = rng.choice(("fine", "coarse"))
    return RoomObject(f"{kind}{number}", kind, (x, y, z), size, texture, _colour(rng))


def layout(seed: int = 0, texture: str = "mixed") -> RoomLayout:
    """The room drawn from `seed` (no Blender needed)."""
    rng = random.Random(int(seed) * 7919 + 14)
    size_x, size_y = (rng.uniform(*ROOM_SIDE) for _ in range(2))
    height = rng.uniform(*ROOM_HEIGHT)
    eye = rng.uniform(*EYE_HEIGHT)
    camera_x = rng.uniform(WALL_CLEARANCE, size_x - WALL_CLEARANCE)
    camera_y = rng.uniform(WALL_CLEARANCE, size_y - WALL_CLEARANCE)
    low = (-camera_x, -camera_y, -eye)
    high = (size_x - camera_x, size_y - camera_y, height - eye)
    textures = _surface_textures(rng, texture)
    colours = {name: _colour(rng) for name in WALLS}
    objects = []
    target = rng.randint(7, 12)
    for _attempt in range(200):
        if len(objects) == target:
            break
        obj = _one_object(rng, len(objects), low, high)
        if obj is not None and not any(_overlap(obj, other) for other in objects):
            objects.append(obj)
    light = (rng.uniform(low[0] + 1.0, high[0] - 1.0), rng.uniform(low[1] + 1.0, high[1] - 1.0), high[2] - 0.4)
    return RoomLayout(low, high, textures, colours, tuple(objects), light)


def _overlap(a: RoomObject, b: RoomObject) -> bool:
    ra = max(a.size[:2]) / (2 if a.kind == "box" else 1) * 1.45
    rb = max(b.size[:2]) / (2 if b.kind == "box" else 1) * 1.45
    return math.hypot(a.centre[0] - b.centre[0], a.centre[1] - b.centre[1]) < ra + rb


# --- Blender -------------------------------------------------------------------------------------

TEXTURE_SETTINGS = {  # noise scale (1/m), detail, contrast; a second, coarser layer's scale and weight
    "fine": (35.0, 3.0, 1.0, 4.0, 0.35),
    "coarse": (3.0, 2.0, 1.0, 30.0, 0.15),
    "weak": (10.0, 2.0, 0.3, 3.0, 0.5),
}


def _noise_colour(tree, coordinates, kind: str, colour):
    """Colour socket: `colour` modulated by world-space noise of the texture `kind`."""
    scale, detail, contrast, second_scale, second_weight = TEXTURE_SETTINGS[kind]
    first = tree.nodes.new("ShaderNodeTexNoise")
    first.inputs["Scale"].default_value = scale
    first.inputs["Detail"].default_value = detail
    second = tree.nodes.new("ShaderNodeTexNoise")
    second.inputs["Scale"].default_value = second_scale
    second.inputs["Detail"].default_value = 1.0
    for node in (first, second):
        tree.links.new(coordinates, node.inputs["Vector"])
    mix = tree.nodes.new("ShaderNodeMath")  # (1 - w) first + w second
    mix.operation = "MULTIPLY_ADD"
    mix.inputs[1].default_value = second_weight
    tree.links.new(second.outputs["Fac"], mix.inputs[0])
    base = tree.nodes.new("ShaderNodeMath")
    base.operation = "MULTIPLY"
    base.inputs[1].default_value = 1.0 - second_weight
    tree.links.new(first.outputs["Fac"], base.inputs[0])
    tree.links.new(base.outputs["Value"], mix.inputs[2])
    # Noise Fac sits around 0.5 with a spread of about +-0.2: stretch it to the contrast.
    gain = tree.nodes.new("ShaderNodeMath")
    gain.operation = "MULTIPLY_ADD"
    gain.inputs[1].default_value = 2.2 * contrast
    gain.inputs[2].default_value = 1.0 - 1.1 * contrast
    tree.links.new(mix.outputs["Value"], gain.inputs[0])
    tint = tree.nodes.new("ShaderNodeVectorMath")
    tint.operation = "SCALE"
    tint.inputs[0].default_value = colour
    tree.links.new(gain.outputs["Value"], tint.inputs["Scale"])
    return tint.outputs["Vector"]


def _material(name: str, kind: str, colour, fill: float = 0.25):
    import bpy

    from . import scenes

    material = bpy.data.materials.new(name)
    tree = scenes._node_tree(material)
    geometry = tree.nodes.new("ShaderNodeNewGeometry")
    value = _noise_colour(tree, geometry.outputs["Position"], kind, colour)
    diffuse = tree.nodes.new("ShaderNodeBsdfDiffuse")
    tree.links.new(value, diffuse.inputs["Color"])
    emission = tree.nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = fill
    tree.links.new(value, emission.inputs["Color"])
    add = tree.nodes.new("ShaderNodeAddShader")
    tree.links.new(diffuse.outputs["BSDF"], add.inputs[0])
    tree.links.new(emission.outputs["Emission"], add.inputs[1])
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(add.outputs["Shader"], output.inputs["Surface"])
    scenes._add_ray_aov(tree)
    return material


def build_room_random(builder, seed: int = 0, texture: str = "mixed") -> None:
    import bpy

    from . import scenes

    room = layout(seed, texture)
    (x0, y0, z0), (x1, y1, z1) = room.low, room.high
    t = scenes.WALL_THICKNESS
    cx, cy, cz = (x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2
    sx, sy, sz = x1 - x0 + 2 * t, y1 - y0 + 2 * t, z1 - z0 + 2 * t
    surfaces = {
        "floor": ((cx, cy, z0 - t / 2), (sx, sy, t)),
        "ceiling": ((cx, cy, z1 + t / 2), (sx, sy, t)),
        "wall+X": ((x1 + t / 2, cy, cz), (t, sy, sz)),
        "wall-X": ((x0 - t / 2, cy, cz), (t, sy, sz)),
        "wall+Y": ((cx, y1 + t / 2, cz), (sx, t, sz)),
        "wall-Y": ((cx, y0 - t / 2, cz), (sx, t, sz)),
    }
    for name, (location, size) in surfaces.items():
        builder.box(name, _material(name, room.textures[name], room.colours[name]), location, size)
    for obj in room.objects:
        material = _material(obj.name, obj.texture, obj.colour)
        if obj.kind == "box":
            builder.box(obj.name, material, obj.centre, obj.size)
        elif obj.kind == "sphere":
            builder.sphere(obj.name, material, obj.centre, obj.size[0])
        else:
            builder.cylinder(obj.name, material, obj.centre, obj.size[0], obj.size[2])
    light_data = bpy.data.lights.new("light", "POINT")
    light_data.energy = 60.0 * (max(room.size[:2]) / 9.0) ** 2
    light_data.shadow_soft_size = 0.0
    light = bpy.data.objects.new("light", light_data)
    light.location = room.light
    builder.scene.collection.objects.link(light)
    scenes._world(sky=False)


SCENES = {"room_random": build_room_random}
