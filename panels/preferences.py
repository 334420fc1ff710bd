"""Add-on preferences: where model weights live, which device runs the networks, and the Ray cluster
that videos can be sent to."""

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

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
    use_cluster: BoolProperty(
        name="Send Videos to a Ray Cluster",
        description="Estimate videos and image sequences in chunks on a Ray cluster (needs Ray where the "
        "engine runs, and every node must see the footage, the models and the output folder at the same paths)",
        default=False,
    )
    cluster_address: StringProperty(
        name="Cluster Address",
        description="HOST:PORT of the cluster's head (ray start --head --port PORT), or ray://HOST:PORT "
        "through its Ray Client server; empty: a Ray cluster started on this computer for each job",
    )
    cluster_chunk_frames: IntProperty(name="Frames per Chunk", default=100, min=1,
                                      description="Frames each task of the cluster estimates")
    cluster_retries: IntProperty(name="Retries", default=3, min=0,
                                 description="Times a failed or killed chunk is tried again")

    def draw(self, _context):
        layout = self.layout
        layout.prop(self, "models_dir")
        if not self.models_dir:
            layout.label(text=f"Using {default_models_dir()}", icon="FILE_FOLDER")
        layout.prop(self, "device")
        self.draw_cluster(layout.box())
        self.draw_dependencies(layout.box())

    def draw_cluster(self, box):
        box.prop(self, "use_cluster")
        column = box.column()
        column.enabled = self.use_cluster
        column.prop(self, "cluster_address")
        row = column.row()
        row.prop(self, "cluster_chunk_frames")
        row.prop(self, "cluster_retries")
        if self.use_cluster and not self.cluster_address:
            column.label(text="A Ray cluster on this computer for each job (one chunk per GPU)", icon="INFO")

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
