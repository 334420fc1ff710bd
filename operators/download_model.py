"""`depth360.download_model`: fetch a model's official weights into the models folder.

The download runs `depth360 models download` in a worker process (the engine's own
resumable, verified, atomic download), so Blender stays responsive; it is refused
unless Blender allows online access. Headless, it blocks.
"""

from __future__ import annotations

import bpy
from bpy.props import StringProperty

from ..estimators.cli.worker_protocol import WorkerProcess
from ..estimators.models import registry
from . import dependencies

POLL_INTERVAL_S = 0.2


def models_folder(context) -> str:
    """The models folder: the preferences' choice, else the extension's user folder."""
    prefs = dependencies.addon_preferences(context)
    chosen = getattr(prefs, "models_dir", "") if prefs is not None else ""
    return bpy.path.abspath(chosen) if chosen else dependencies.extension_user_path("models")


def download_command(context, model: str, url: str = "") -> list[str]:
    """The worker's command line for downloading `model` (from `url`, a mirror, if given)."""
    prefs = dependencies.addon_preferences(context)
    command = [dependencies.chosen_python(prefs), "-u", "-m",
               f"{dependencies.engine_package()}.estimators.cli", "models", "download", model,
               "--models-dir", models_folder(context), "--quiet"]
    return command + (["--url", url] if url else [])


class DEPTH360_OT_download_model(bpy.types.Operator):
    """Download the model's official weights into the models folder"""

    bl_idname = "depth360.download_model"
    bl_label = "Download Weights"

    model: StringProperty(name="Model", description="Model name (default: the scene's)")
    url: StringProperty(name="URL", description="Fetch from this mirror instead", options={"HIDDEN"})

    _worker: WorkerProcess | None = None
    _timer = None

    def _start(self, context) -> bool:
        name = self.model or context.scene.depth360.model
        spec = registry.find(name)
        if spec is None or not spec.checkpoint:
            self.report({"ERROR"}, f"{name} has no weights to download")
            return False
        if not bpy.app.online_access:
            self.report({"ERROR"}, "Downloading needs online access: allow it in Preferences > System "
                        f"> Network, or put {spec.checkpoint} into {models_folder(context)} by hand")
            return False
        self.model = name
        self._worker = WorkerProcess(download_command(context, name, self.url),
                                     env=dependencies.engine_environment())
        return True

    def _finish(self, result) -> set[str]:
        if result.returncode != 0:
            self.report({"ERROR"}, f"Downloading {self.model} failed: {result.message}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Downloaded the weights of {self.model}")
        return {"FINISHED"}

    def execute(self, context):
        if not self._start(context):
            return {"CANCELLED"}
        return self._finish(self._worker.run_to_end())

    def invoke(self, context, _event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        if not self._start(context):
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(POLL_INTERVAL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        context.scene.depth360.status = f"Downloading {self.model}…"
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._worker.cancel()
        if event.type not in {"TIMER", "ESC"}:
            return {"PASS_THROUGH"}
        self._worker.poll()
        result = self._worker.result()
        if result is None:
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        context.scene.depth360.status = ""
        return self._finish(result)


CLASSES = [DEPTH360_OT_download_model]
