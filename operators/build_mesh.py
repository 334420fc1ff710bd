"""Operator: build the 360 depth mesh of the real scene from a plate and its depth."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from ..compositing import depth_mesh
from ..compositing.image_data import CompositingInputError
from ..compositing.scene_transaction import scene_transaction


class DEPTH360_OT_build_mesh(bpy.types.Operator):
    """Build a 360 mesh of the real scene around the panoramic camera from its depth"""

    bl_idname = "depth360.build_mesh"
    bl_label = "Build Depth Mesh"
    bl_options = {"REGISTER", "UNDO"}

    image_path: StringProperty(name="Plate", subtype="FILE_PATH",
                               description="360 image, image sequence or movie")
    depth_path: StringProperty(name="Depth", subtype="FILE_PATH",
                               description="Distance file (OpenEXR), or the first file of a sequence")
    method: EnumProperty(name="Method", default="vertices", items=[
        ("vertices", "Vertices", "Vertices at their distance, torn apart at depth discontinuities"),
        ("displace", "Displace", "A sphere with a Displace modifier reading the depth image"),
    ])
    rows: IntProperty(name="Rows", default=256, min=2, soft_max=2048)
    cols: IntProperty(name="Columns", default=512, min=3, soft_max=4096)
    discontinuity: FloatProperty(
        name="Discontinuity", default=0.1, min=0.0, soft_max=1.0,
        description="Remove faces whose corner distances differ by more than this fraction",
    )
    strength: FloatProperty(name="Strength", default=1.0, description="Displace strength")
    midlevel: FloatProperty(name="Midlevel", default=1.0, description="Displace mid-level")
    shadow_catcher: BoolProperty(name="Shadow Catcher", default=False,
                                 description="Let virtual objects cast shadows onto the mesh")

    def execute(self, context):
        try:
            with scene_transaction(context.scene):
                obj = depth_mesh.build_mesh(
                    self.image_path, self.depth_path, resolution=(self.rows, self.cols),
                    discontinuity=self.discontinuity, method=self.method,
                    strength=self.strength, midlevel=self.midlevel, scene=context.scene,
                )
                if self.shadow_catcher:
                    depth_mesh.shadow_catcher(obj, context.scene)
        except CompositingInputError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Built {obj.name}: {len(obj.data.polygons)} faces")
        return {"FINISHED"}


CLASSES = [DEPTH360_OT_build_mesh]
