"""Per-scene Depth 360 settings (`scene.depth360`), what the N-panel edits."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..estimators.models import registry

LAYOUT_ITEMS = [
    ("mono", "Mono", "One equirectangular image per frame"),
    ("top-bottom", "Top-Bottom", "Stereo 360, left eye on top"),
    ("side-by-side", "Side-by-Side", "Stereo 360, left eye on the left"),
    ("vr180", "VR180", "Stereo 180: two half-equirect eyes (180 x 180 degrees) side by side, left eye on the left"),
]

VIEW_ITEMS = [
    ("cube", "Cube", "Six overlapping perspective views"),
    ("ico", "Icosahedron", "Twenty tangent views: finer, slower"),
    ("equirect", "Equirect", "One pass over the whole frame (naive, fastest)"),
]


# A static list: the registry is fixed, and a dynamic (callback) enum left registered
# makes the bpy 4.2 module crash when Python exits.
MODEL_ITEMS = [(spec.name, spec.title, spec.summary) for spec in registry.all_specs()]

# Blender 4.5 and 5.0 ask path properties to declare that they accept "//"; 4.2 has no such option.
_BLEND_RELATIVE = {"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (4, 5, 0) else set()


class Depth360SceneSettings(bpy.types.PropertyGroup):
    source_path: StringProperty(
        name="Source",
        description="360 image, movie or image sequence to estimate depth for",
        subtype="FILE_PATH", options=_BLEND_RELATIVE,
    )
    layout: EnumProperty(name="Layout", items=LAYOUT_ITEMS, default="mono")
    model: EnumProperty(name="Model", items=MODEL_ITEMS, default=registry.DEFAULT_MODEL)
    views: EnumProperty(name="Views", items=VIEW_ITEMS, default="cube")
    input_size: IntProperty(
        name="Network Size", default=0, min=0, soft_max=1036,
        description="The network's input side in pixels: smaller is faster and coarser; 0: the model's own "
        "(518 for Depth Anything)",
    )
    near: FloatProperty(
        name="Near", description="Distance of the nearest surface, in metres",
        default=0.5, min=0.001, soft_max=100.0, unit="LENGTH",
    )
    far: FloatProperty(
        name="Far", description="Distance given to the farthest surfaces and the sky, in metres",
        default=100.0, min=0.01, soft_max=10000.0, unit="LENGTH",
    )
    output_dir: StringProperty(
        name="Output", description="Folder for depth files (// is the .blend's folder)",
        subtype="DIR_PATH", default="//depth/", options=_BLEND_RELATIVE,
    )
    replace_other_settings: BoolProperty(
        name="Replace Other Settings", default=True,
        description="Recompute depth that the output folder holds from other settings (off: stop with an "
        "error instead); depth made with the same settings is always kept and resumed",
    )
    # After an estimate: what to build from its outputs (depth360.estimate).
    build_mesh_after: BoolProperty(
        name="Build Mesh", default=True, description="Build the 360 depth mesh after estimating",
    )
    build_compositor_after: BoolProperty(
        name="Build Compositor", default=True,
        description="Build the depth compositor after estimating",
    )
    # Written by depth360.estimate: its progress and the files of the last finished run.
    progress: FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    status: StringProperty(name="Status")
    depth_path: StringProperty(
        name="Depth", subtype="FILE_PATH", options=_BLEND_RELATIVE,
        description="Distance file of the last estimate (what Paint Depth edits)",
    )


CLASSES = [Depth360SceneSettings]
