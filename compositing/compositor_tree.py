"""Compositor trees that put Blender's render of virtual objects into 360 footage by depth.

Plate and depth (stills, sequences or movies, frame-synced) go through a Z combine
against the Render Layers (image and Depth pass of the panoramic camera), so virtual
objects nearer than the real surface cover the plate and those behind it are hidden.
The plate is first multiplied by Cycles' Shadow Catcher pass (1 where nothing is
caught), so a depth mesh made a shadow catcher (`depth_mesh.shadow_catcher`) darkens
the plate where virtual objects cast shadows. Optionally a Defocus node blurs the
result by its depth around the camera's focus distance.

Depth values: a distance EXR (what the engine writes, metres along the ray, the same
quantity as Cycles' Depth pass of a panoramic camera) is used as it is: the Map Range
node is the identity. A normalised depth file (0 at `near`, 1 at `far`) is mapped back
to metres with `near` and `far`.

Blender versions differ, and the tree is built with the running version's API
(feature-detected, not version-compared):
- 4.x: `scene.use_nodes` and `scene.node_tree`, Z Combine (`Image`/`Z`/`Image_001`/`Z_001`),
  `CompositorNodeMapRange`, `CompositorNodeMixRGB`, a Composite output node.
- 5.0: a "Depth360 Compositing" node group set as `scene.compositing_node_group`,
  Depth Combine (`A`/`Depth A`/`B`/`Depth B`), `ShaderNodeMapRange`, `ShaderNodeMix`,
  a Group Output.
"""

from __future__ import annotations

import bpy

from .depth_mesh import ensure_panoramic_camera, field_of_view, set_field_of_view
from .image_data import CompositingInputError, load_plate_and_depth, sync_image_user

TREE_NAME = "Depth360 Compositing"


def uses_node_group_compositor(scene: bpy.types.Scene) -> bool:
    """True where the compositor is a node group assigned to the scene (Blender 5.0+)."""
    return hasattr(scene, "compositing_node_group")


def _input(node, identifier: str):
    return next(socket for socket in node.inputs if socket.identifier == identifier)


def _output(node, identifier: str):
    return next(socket for socket in node.outputs if socket.identifier == identifier)


class _TreeBuilder:
    """The few nodes whose type or sockets differ between Blender versions."""

    def __init__(self, scene: bpy.types.Scene):
        self.node_group_api = uses_node_group_compositor(scene)
        if self.node_group_api:
            tree = bpy.data.node_groups.get(TREE_NAME)
            if tree is None or tree.bl_idname != "CompositorNodeTree":
                tree = bpy.data.node_groups.new(TREE_NAME, "CompositorNodeTree")
            tree.nodes.clear()
            tree.interface.clear()
            tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
            scene.compositing_node_group = tree
        else:
            scene.use_nodes = True
            tree = scene.node_tree
            tree.nodes.clear()
        self.tree = tree
        self.nodes, self.links = tree.nodes, tree.links

    def new(self, node_type: str, location):
        node = self.nodes.new(node_type)
        node.location = location
        return node

    def scale_to_render_size(self, socket, location):
        node = self.new("CompositorNodeScale", location)
        if self.node_group_api:
            node.inputs["Type"].default_value = "Render Size"
            node.inputs["Frame Type"].default_value = "Stretch"
        else:
            node.space = "RENDER_SIZE"
            node.frame_method = "STRETCH"
        self.links.new(socket, node.inputs["Image"])
        return node.outputs["Image"]

    def map_range(self, socket, from_range, to_range, location):
        if self.node_group_api:
            node = self.new("ShaderNodeMapRange", location)
            node.data_type = "FLOAT"
            node.clamp = False
        else:
            node = self.new("CompositorNodeMapRange", location)
            node.use_clamp = False
        node.inputs["From Min"].default_value, node.inputs["From Max"].default_value = from_range
        node.inputs["To Min"].default_value, node.inputs["To Max"].default_value = to_range
        self.links.new(socket, node.inputs["Value"])
        return node.outputs[0]

    def multiply(self, color, value, location):
        if self.node_group_api:
            node = self.new("ShaderNodeMix", location)
            node.data_type = "RGBA"
            node.blend_type = "MULTIPLY"
            _input(node, "Factor_Float").default_value = 1.0
            a, b, result = _input(node, "A_Color"), _input(node, "B_Color"), _output(node, "Result_Color")
        else:
            node = self.new("CompositorNodeMixRGB", location)
            node.blend_type = "MULTIPLY"
            node.inputs["Fac"].default_value = 1.0
            a, b, result = _input(node, "Image"), _input(node, "Image_001"), node.outputs["Image"]
        self.links.new(color, a)
        self.links.new(value, b)
        return result

    def z_combine(self, image_a, depth_a, image_b, depth_b, location, antialias: bool):
        # `antialias`: the node's Z anti-aliasing softens the hard per-pixel choice where the
        # plate's depth edge cuts the virtual object (the object's own silhouette is already
        # anti-aliased by the render's alpha).
        node = self.new("CompositorNodeZcombine", location)
        if self.node_group_api:
            sockets = ("A", "Depth A", "B", "Depth B")
            node.inputs["Use Alpha"].default_value = True
            node.inputs["Anti-Alias"].default_value = antialias
            outputs = (node.outputs["Result"], node.outputs["Depth"])
        else:
            sockets = ("Image", "Z", "Image_001", "Z_001")
            node.use_alpha = True
            node.use_antialias_z = antialias
            outputs = (node.outputs["Image"], node.outputs["Z"])
        for socket, identifier in zip((image_a, depth_a, image_b, depth_b), sockets, strict=True):
            self.links.new(socket, _input(node, identifier))
        return outputs

    def output(self, image, location):
        if self.node_group_api:
            node = self.new("NodeGroupOutput", location)
            self.links.new(image, node.inputs[0])
        else:
            node = self.new("CompositorNodeComposite", location)
            node.use_alpha = True
            self.links.new(image, node.inputs["Image"])
        viewer = self.new("CompositorNodeViewer", (location[0], location[1] - 200))
        self.links.new(image, viewer.inputs["Image"])


def _image_node(builder: _TreeBuilder, loaded, location):
    node = builder.new("CompositorNodeImage", location)
    node.image = loaded.image
    sync_image_user(node, loaded.image, loaded.footage)
    return node


def _check_options(near, far, focus_distance, fstop) -> None:
    if (near is None) != (far is None):
        raise CompositingInputError("near and far must be given together (or neither)")
    if near is not None and not 0.0 <= near < far:
        raise CompositingInputError(f"near ({near}) must be >= 0 and below far ({far})")
    if focus_distance <= 0.0:
        raise CompositingInputError(f"focus distance must be positive, got {focus_distance}")
    if fstop <= 0.0:
        raise CompositingInputError(f"f-stop must be positive, got {fstop}")


def _prepare_scene(scene: bpy.types.Scene, plate) -> None:
    scene.render.engine = "CYCLES"  # panoramic cameras render in Cycles only
    scene.render.film_transparent = True  # the plate shows where nothing virtual is
    scene.render.resolution_x, scene.render.resolution_y = plate.width, plate.height
    for view_layer in scene.view_layers:
        view_layer.use_pass_z = True
        view_layer.cycles.use_pass_shadow_catcher = True
    # The plate must come out as it went in: no filmic curve, look or exposure.
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    camera = scene.camera
    field = field_of_view(plate.height, plate.width)
    if camera is None or camera.type != "CAMERA" or camera.data.type != "PANO" \
            or camera.data.panorama_type != "EQUIRECTANGULAR":
        ensure_panoramic_camera(scene, (0.0, 0.0, 0.0), field)
    else:  # the plate's field: VR180 (square) limits the camera to the half sphere in front
        set_field_of_view(camera.data, field)


def build_compositor(
    plate_path,
    depth_path,
    *,
    near: float | None = None,
    far: float | None = None,
    defocus: bool = False,
    focus_distance: float = 5.0,
    fstop: float = 2.8,
    antialias: bool = False,
    scene: bpy.types.Scene | None = None,
) -> bpy.types.NodeTree:
    """Build the scene's compositor: plate over/under the render by depth; returns the tree.

    `near`/`far`: give both for a normalised depth file (0..1 -> near..far metres);
    leave both None for a distance EXR (used unchanged). `defocus` adds a Defocus node
    driven by the combined depth, focused at `focus_distance` metres (set on the scene
    camera's depth of field) with `fstop`. `antialias`: the Z combine's anti-aliasing where
    the plate's depth edges cut a virtual object (Z Combine's `use_antialias_z`, 5.0's
    "Anti-Alias" input). Off by default: it softens the cut by blurring it, which costs the
    visible object's pixels (a sphere across the room's depth edge, true distance: IoU 1.000 ->
    0.984 in 5.0, 0.984 -> 0.976 in 4.5, 0.984 -> 0.953 in 4.2; a sphere against an outdoor
    sky in 5.0: 0.964 -> 0.839; tests/blender/test_composite_edges.py). Also sets what the tree needs: Cycles, a
    transparent film, the Depth and Shadow Catcher passes, the Standard view transform,
    the render size of the plate, and a panoramic equirect camera (the scene camera if
    it is one, else "Depth360 Camera" at the origin) over the plate's field: 360, or 180
    degrees for a square VR180 plate. Raises CompositingInputError (a ValueError) before
    changing anything.
    """
    _check_options(near, far, focus_distance, fstop)
    scene = scene or bpy.context.scene
    plate, depth = load_plate_and_depth(plate_path, depth_path)
    _prepare_scene(scene, plate)

    builder = _TreeBuilder(scene)
    render = builder.new("CompositorNodeRLayers", (-600, 300))
    render.scene = scene
    render.layer = scene.view_layers[0].name

    plate_node = _image_node(builder, plate, (-900, 0))
    plate_color = builder.scale_to_render_size(plate_node.outputs["Image"], (-650, 0))
    shadowed_plate = builder.multiply(plate_color, render.outputs["Shadow Catcher"], (-350, 0))

    depth_node = _image_node(builder, depth, (-900, -300))
    depth_scaled = builder.scale_to_render_size(depth_node.outputs["Image"], (-650, -300))
    separate = builder.new("CompositorNodeSeparateColor", (-450, -300))
    builder.links.new(depth_scaled, separate.inputs["Image"])
    from_to = ((0.0, 1.0), (near, far)) if near is not None else ((0.0, 1.0), (0.0, 1.0))
    plate_depth = builder.map_range(separate.outputs["Red"], *from_to, (-250, -300))

    image, combined_depth = builder.z_combine(
        shadowed_plate, plate_depth, render.outputs["Image"], render.outputs["Depth"], (0, 0), antialias
    )
    if defocus:
        node = builder.new("CompositorNodeDefocus", (250, 0))
        node.use_zbuffer = True
        node.f_stop = fstop
        node.scene = scene
        scene.camera.data.dof.focus_distance = focus_distance
        scene.camera.data.dof.focus_object = None
        builder.links.new(image, node.inputs["Image"])
        builder.links.new(combined_depth, node.inputs["Z"])
        image = node.outputs["Image"]
    builder.output(image, (500, 0))
    return builder.tree
