"""Operator: animate the panoramic camera from the camera solve and put a frame's depth mesh in world space."""

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from ..compositing import camera_solve
from ..compositing.image_data import CompositingInputError


class DEPTH360_OT_apply_camera_solve(bpy.types.Operator):
    """Animate the 360 camera along the solved camera path and place the chosen frame's depth mesh in the world"""

    bl_idname = "depth360.apply_camera_solve"
    bl_label = "Apply Camera Solve"
    bl_options = {"REGISTER", "UNDO"}

    plate_path: StringProperty(name="Plate", subtype="FILE_PATH",
                               description="360 image sequence or movie (default: the scene's source)")
    depth_path: StringProperty(name="Depth", subtype="FILE_PATH",
                               description="Distance file of a frame of the solved shot (default: the last estimate's)")
    frame: IntProperty(name="Frame", default=0, min=0,
                       description="Frame whose depth mesh goes into the world (0: the current frame)")
    build_mesh: BoolProperty(name="Depth Mesh", default=True, description="Place the chosen frame's depth mesh")
    shadow_catcher: BoolProperty(name="Shadow Catcher", default=False,
                                 description="Let virtual objects cast shadows onto the mesh")

    def execute(self, context):
        settings = context.scene.depth360
        plate = self.plate_path or settings.source_path
        depth = self.depth_path or settings.depth_path
        if not depth or (self.build_mesh and not plate):
            self.report({"ERROR"}, "Give a depth file of the solved shot (and its plate), or estimate depth first")
            return {"CANCELLED"}
        try:
            camera, mesh = camera_solve.apply_camera_solve(
                plate, depth, frame=self.frame or None, build_mesh=self.build_mesh,
                shadow_catcher=self.shadow_catcher, scene=context.scene)
        except CompositingInputError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        keys = camera.animation_data.action.frame_range if camera.animation_data and camera.animation_data.action \
            else (0, 0)
        placed = f"; {mesh.name} in world space" if mesh is not None else ""
        self.report({"INFO"}, f"{camera.name} keyed on frames {int(keys[0])}-{int(keys[1])}{placed}")
        return {"FINISHED"}


CLASSES = [DEPTH360_OT_apply_camera_solve]
