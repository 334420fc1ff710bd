"""The "Depth 360" tab in the 3D viewport's sidebar (N-panel)."""

import bpy

from ..estimators.models import registry


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


def _draw_weights(layout, context, spec) -> None:
    """Whether the model's weights are in the models folder; a download button when allowed."""
    from ..estimators.models import weights
    from ..operators.download_model import models_folder

    if weights.weights_present(spec, models_folder(context)):
        layout.label(text="Weights present", icon="CHECKMARK")
    elif bpy.app.online_access:
        layout.operator("depth360.download_model", icon="IMPORT").model = spec.name
    else:
        layout.label(text=f"Weights missing: {spec.checkpoint}", icon="ERROR")
        layout.label(text="Allow online access to download them")


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
            if spec.checkpoint:
                _draw_weights(layout, context, spec)
        layout.prop(settings, "views")
        layout.prop(settings, "input_size")
        row = layout.row(align=True)
        row.prop(settings, "near")
        row.prop(settings, "far")


class VIEW3D_PT_depth360_output(_Depth360Tab, bpy.types.Panel):
    bl_label = "Output"
    bl_parent_id = "VIEW3D_PT_depth360"

    def draw(self, context):
        self.layout.prop(context.scene.depth360, "output_dir")
        self.layout.prop(context.scene.depth360, "replace_other_settings")


class VIEW3D_PT_depth360_estimate(_Depth360Tab, bpy.types.Panel):
    bl_label = "Estimate"
    bl_parent_id = "VIEW3D_PT_depth360"

    def draw(self, context):
        from ..operators import dependencies, estimate

        settings = context.scene.depth360
        layout = self.layout
        row = layout.row(align=True)
        row.prop(settings, "build_mesh_after", toggle=True)
        row.prop(settings, "build_compositor_after", toggle=True)
        if context.scene.as_pointer() in estimate.ACTIVE_JOBS:
            row = layout.row(align=True)
            row.progress(factor=settings.progress, text=settings.status or "Estimating...")
            row.operator("depth360.cancel_estimate", text="", icon="CANCEL")
        else:
            layout.operator("depth360.estimate", icon="PLAY")
            if settings.status:
                layout.label(text=settings.status)
        report = dependencies.last_report(dependencies.chosen_python(dependencies.addon_preferences(context)))
        if report is not None and not report.ok:
            layout.label(text=f"Missing: {', '.join(report.missing)} (see Preferences)", icon="ERROR")
        row = layout.row(align=True)
        row.operator("depth360.paint_depth", icon="BRUSH_DATA")
        row.operator("depth360.save_painted_depth", icon="FILE_TICK")


class VIEW3D_PT_depth360_camera_solve(_Depth360Tab, bpy.types.Panel):
    bl_label = "Moving Camera"
    bl_parent_id = "VIEW3D_PT_depth360"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        layout.label(text="Camera path solved from the footage", icon="CON_CAMERASOLVER")
        layout.operator("depth360.apply_camera_solve", icon="CAMERA_DATA")
        layout.label(text=f"Depth mesh of frame {context.scene.frame_current} in world space")


CLASSES = [
    VIEW3D_PT_depth360,
    VIEW3D_PT_depth360_source,
    VIEW3D_PT_depth360_model,
    VIEW3D_PT_depth360_output,
    VIEW3D_PT_depth360_estimate,
    VIEW3D_PT_depth360_camera_solve,
]
