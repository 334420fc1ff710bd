"""The demo's Blender step: the real room as a depth mesh, a virtual object, a composite.

Run with a Python that has the `bpy` module:
    python demo/blender_composite.py --plate left.png --depth left.distance.exr --out composite.png

It uses the extension's Python API the way a pipeline script would: the 360 depth mesh
(also the shadow catcher), the Z-combine compositor, then a virtual sphere on the floor,
partly behind the real green box, lit by a lamp where the real room's lamp is.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Where the example room has things (tests/groundtruth/scenes.py, build_room).
ROOM_LAMP = (0.8, 0.5, 0.6)
FLOOR_Z = -1.5
VIRTUAL_SPHERE = ((2.9, 1.15, FLOOR_Z + 0.45), 0.45)


def _load_headless_entry():
    spec = importlib.util.spec_from_file_location("depth360_headless", REPO / "scripts" / "headless.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _virtual_sphere(bpy, location, radius):
    bpy.ops.mesh.primitive_uv_sphere_add(segments=64, ring_count=32, radius=radius, location=location)
    sphere = bpy.context.active_object
    sphere.name = "Virtual Sphere"
    bpy.ops.object.shade_smooth()
    material = bpy.data.materials.new("Virtual Chrome")
    if material.node_tree is None:  # Blender 4.x
        material.use_nodes = True
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (0.9, 0.75, 0.2, 1.0)
    bsdf.inputs["Metallic"].default_value = 0.6
    bsdf.inputs["Roughness"].default_value = 0.25
    sphere.data.materials.append(material)
    return sphere


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plate", required=True, type=Path, help="the left eye's colour image")
    parser.add_argument("--depth", required=True, type=Path, help="the left eye's distance EXR")
    parser.add_argument("--out", required=True, type=Path, help="composite PNG to write")
    parser.add_argument("--blend", type=Path, help="also save the scene here")
    parser.add_argument("--samples", type=int, default=32)
    args = parser.parse_args(argv)

    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)
    _load_headless_entry().load_extension()
    from depth360.compositing import compositor_tree, depth_mesh

    scene = bpy.context.scene
    mesh = depth_mesh.build_mesh(str(args.plate), str(args.depth), scene=scene)
    depth_mesh.shadow_catcher(mesh, scene=scene)
    compositor_tree.build_compositor(str(args.plate), str(args.depth), scene=scene)

    _virtual_sphere(bpy, *VIRTUAL_SPHERE)
    lamp = bpy.data.lights.new("Room Lamp (matched)", "POINT")
    lamp.energy = 120.0
    lamp.shadow_soft_size = 0.05
    lamp_object = bpy.data.objects.new("Room Lamp (matched)", lamp)
    lamp_object.location = ROOM_LAMP
    scene.collection.objects.link(lamp_object)

    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = args.samples
    scene.cycles.use_denoising = False
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5.0+
        settings.media_type = "IMAGE"
    settings.file_format = "PNG"
    settings.color_mode = "RGB"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(args.out.resolve())
    bpy.ops.render.render(write_still=True)
    if args.blend:
        bpy.ops.wm.save_as_mainfile(filepath=str(args.blend.resolve()))
    print(f"composite: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
