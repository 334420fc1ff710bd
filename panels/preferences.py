"""Add-on preferences: where model weights live, and which device runs the networks."""

import bpy
from bpy.props import EnumProperty, StringProperty

# The extension's root package, e.g. "bl_ext.user_default.depth360".
ADDON_PACKAGE = __package__.rpartition(".")[0]

DEVICE_ITEMS = [
    ("auto", "Automatic", "CUDA if available, then Apple Metal (MPS), then the CPU"),
    ("cpu", "CPU", "Run the networks on the CPU"),
    ("cuda", "CUDA", "Run the networks on an NVIDIA GPU"),
    ("mps", "Metal", "Run the networks on an Apple GPU"),
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

    def draw(self, _context):
        layout = self.layout
        layout.prop(self, "models_dir")
        if not self.models_dir:
            layout.label(text=f"Using {default_models_dir()}", icon="FILE_FOLDER")
        layout.prop(self, "device")


CLASSES = [Depth360Preferences]
