"""The "Depth 360" tab in the 3D viewport's sidebar (N-panel)."""

import bpy

from ..estimators import registry


class _Depth360Tab:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Depth 360"


class VIEW3D_PT_depth360(_Depth360Tab, bpy.types.Panel):
    bl_label = "Depth 360"

    def draw(self, context):
        self.layout.label(text="Depth for 360 footage", icon="CAMERA_STEREO")


class VIEW3D_PT_depth360_source(_Depth360Tab, bpy.types.Panel):
    bl_label = "Source"
    bl_parent_id = "VIEW3D_PT_depth360"

    def draw(self, context):
        settings = context.scene.depth360
        self.layout.prop(settings, "source_path")
        self.layout.prop(settings, "layout")


class VIEW3D_PT_depth360_model(_Depth360Tab, bpy.types.Panel):
    bl_label = "Model"
    bl_parent_id = "VIEW3D_PT_depth360"

    def draw(self, context):
        settings = context.scene.depth360
        layout = self.layout
        layout.prop(settings, "model")
        spec = registry.find(settings.model)
        if spec is not None:
            layout.label(text=f"Licence: {spec.license}", icon="INFO")
            if not spec.commercial_use:
                layout.label(text="Non-commercial use only", icon="ERROR")
        layout.prop(settings, "views")
        row = layout.row(align=True)
        row.prop(settings, "near")
        row.prop(settings, "far")


class VIEW3D_PT_depth360_output(_Depth360Tab, bpy.types.Panel):
    bl_label = "Output"
    bl_parent_id = "VIEW3D_PT_depth360"

    def draw(self, context):
        self.layout.prop(context.scene.depth360, "output_dir")


CLASSES = [
    VIEW3D_PT_depth360,
    VIEW3D_PT_depth360_source,
    VIEW3D_PT_depth360_model,
    VIEW3D_PT_depth360_output,
]
