"""Add-on preferences: where model weights live, and which device runs the networks."""

import bpy
from bpy.props import EnumProperty, StringProperty

from ..operators import dependencies
from ..operators.dependencies import ADDON_PACKAGE

DEVICE_ITEMS = [
    ("auto", "Automatic", "CUDA if available, then Apple Metal (MPS), then the CPU"),
    ("cpu", "CPU", "Run the networks on the CPU"),
    ("cuda", "CUDA", "Run the networks on an NVIDIA GPU"),
    ("mps", "Metal", "Run the networks on an Apple GPU"),
]

TORCH_BUILD_ITEMS = [
    ("cpu", "CPU", "PyTorch for the CPU (small download)"),
    ("cuda", "CUDA", "PyTorch with CUDA for NVIDIA GPUs (large download)"),
]


def default_models_dir() -> str:
    """The extension's own user folder for weights, created on demand."""
    return bpy.utils.extension_path_user(ADDON_PACKAGE, path="models", create=True)


class Depth360Preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    models_dir: StringProperty(
        name="Models Folder",
        description="Folder holding model weights (empty: the extension's user folder)",
        subtype="DIR_PATH",
    )
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="auto")
    python_path: StringProperty(
        name="External Python",
        description="A Python 3.11 with torch and the engine's dependencies that runs the depth "
        "engine (empty: Blender's own Python, with dependencies installed for the extension)",
        subtype="FILE_PATH",
    )
    torch_build: EnumProperty(name="PyTorch Build", items=TORCH_BUILD_ITEMS, default="cpu")

    def draw(self, _context):
        layout = self.layout
        layout.prop(self, "models_dir")
        if not self.models_dir:
            layout.label(text=f"Using {default_models_dir()}", icon="FILE_FOLDER")
        layout.prop(self, "device")
        self.draw_dependencies(layout.box())

    def draw_dependencies(self, box):
        box.label(text="Engine Dependencies", icon="SCRIPT")
        box.prop(self, "python_path")
        report = dependencies.last_report(dependencies.chosen_python(self))
        if report is None:
            box.label(text="Not checked yet", icon="QUESTION")
        elif report.ok:
            box.label(text=f"All present (torch {report.versions.get('torch')})", icon="CHECKMARK")
        else:
            box.label(text=f"Missing: {', '.join(report.missing)}", icon="ERROR")
        row = box.row()
        row.operator("depth360.check_dependencies", icon="FILE_REFRESH")
        if not self.python_path:
            install = box.row(align=True)
            install.prop(self, "torch_build", text="")
            install.operator("depth360.install_dependencies", icon="IMPORT")
            if not bpy.app.online_access:
                box.label(text="Installing needs online access (Preferences > System)", icon="INFO")


CLASSES = [Depth360Preferences]
