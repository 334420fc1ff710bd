"""Operator: build the Z-combine compositor that puts virtual objects into the plate by depth."""

import bpy
from bpy.props import BoolProperty, FloatProperty, StringProperty

from ..compositing import compositor_tree
from ..compositing.image_data import CompositingInputError
from ..compositing.scene_transaction import scene_transaction


class DEPTH360_OT_build_compositor(bpy.types.Operator):
    """Composite the render over the 360 plate by depth (virtual objects go behind real ones)"""

    bl_idname = "depth360.build_compositor"
    bl_label = "Build Depth Compositor"
    bl_options = {"REGISTER", "UNDO"}

    plate_path: StringProperty(name="Plate", subtype="FILE_PATH",
                               description="360 image, image sequence or movie")
    depth_path: StringProperty(name="Depth", subtype="FILE_PATH",
                               description="Distance file (OpenEXR), or the first file of a sequence")
    normalized: BoolProperty(
        name="Normalised Depth", default=False,
        description="The depth file holds 0..1 (near..far) instead of metres",
    )
    near: FloatProperty(name="Near", default=0.5, min=0.0, unit="LENGTH")
    far: FloatProperty(name="Far", default=100.0, min=0.001, unit="LENGTH")
    defocus: BoolProperty(name="Defocus", default=False, description="Blur by depth")
    focus_distance: FloatProperty(name="Focus Distance", default=5.0, min=0.001, unit="LENGTH")
    fstop: FloatProperty(name="F-Stop", default=2.8, min=0.01)

    def execute(self, context):
        near_far = {"near": self.near, "far": self.far} if self.normalized else {}
        try:
            with scene_transaction(context.scene):
                compositor_tree.build_compositor(
                    self.plate_path, self.depth_path, defocus=self.defocus,
                    focus_distance=self.focus_distance, fstop=self.fstop, scene=context.scene,
                    **near_far,
                )
        except CompositingInputError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, "Built the Depth 360 compositor")
        return {"FINISHED"}


CLASSES = [DEPTH360_OT_build_compositor]
