"""Materials of the 360 depth mesh: the plate as shadeless emission, and its shadow-catcher form."""

from __future__ import annotations

import bpy

from .image_data import Footage, sync_image_user

PLATE_NODE = "Depth360 Plate"
EMISSION_NODE = "Depth360 Emission"
OUTPUT_NODE = "Depth360 Output"


def plate_material(name: str, image: bpy.types.Image, footage: Footage) -> bpy.types.Material:
    """A new material showing `image` by the mesh's UVs as emission (no lighting).

    Sequences and movies follow the scene frame (image-user frame settings).
    """
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender 4.x; 5.0 materials always have nodes
        material.use_nodes = True
    # A backdrop, not a light: thousands of emissive triangles would make Cycles build
    # and sample a huge light tree (Blender 4.0+).
    if hasattr(material.cycles, "emission_sampling"):
        material.cycles.emission_sampling = "NONE"
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    texture = nodes.new("ShaderNodeTexImage")
    texture.name = PLATE_NODE
    texture.image = image
    texture.extension = "REPEAT"  # longitude wraps
    sync_image_user(texture.image_user, image, footage)
    emission = nodes.new("ShaderNodeEmission")
    emission.name = EMISSION_NODE
    output = nodes.new("ShaderNodeOutputMaterial")
    output.name = OUTPUT_NODE
    links.new(texture.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    texture.location, emission.location, output.location = (-400, 0), (-100, 0), (300, 0)
    return material


def make_shadow_catcher_material(material: bpy.types.Material) -> None:
    """Turn a plate material into one a Cycles shadow catcher can use.

    A shadow catcher measures the light its surface BSDF receives, so camera rays see a
    Diffuse BSDF; every other ray (reflections, bounce light on virtual objects) still
    sees the plate as emission, so the real scene lights and colours the virtual one.
    Idempotent.
    """
    nodes, links = material.node_tree.nodes, material.node_tree.links
    if "Depth360 Catcher Mix" in nodes:
        return
    texture, emission, output = nodes[PLATE_NODE], nodes[EMISSION_NODE], nodes[OUTPUT_NODE]
    diffuse = nodes.new("ShaderNodeBsdfDiffuse")
    diffuse.name = "Depth360 Catcher Diffuse"
    light_path = nodes.new("ShaderNodeLightPath")
    mix = nodes.new("ShaderNodeMixShader")
    mix.name = "Depth360 Catcher Mix"
    links.new(texture.outputs["Color"], diffuse.inputs["Color"])
    links.new(light_path.outputs["Is Camera Ray"], mix.inputs["Fac"])
    links.new(emission.outputs["Emission"], mix.inputs[1])
    links.new(diffuse.outputs["BSDF"], mix.inputs[2])
    links.new(mix.outputs["Shader"], output.inputs["Surface"])
    diffuse.location, light_path.location, mix.location = (-100, -200), (-100, 300), (120, 0)
