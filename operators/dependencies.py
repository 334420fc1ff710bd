"""The engine's Python dependencies: which Python runs it, whether they import, installing them.

The depth engine needs torch and a few other packages that Blender does not ship. They
either live in an external Python named in the preferences, or are installed with pip
into the extension's own user folder (`site-packages`), which the worker gets on its
PYTHONPATH and an in-process run appends to `sys.path`. Installing downloads, so it is
refused unless Blender allows online access (`bpy.app.online_access`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from ..estimators.cli.worker_protocol import WorkerProcess, worker_environment

# The extension's root package, e.g. "bl_ext.user_default.depth360" (the preferences' bl_idname).
ADDON_PACKAGE = __package__.rpartition(".")[0]

# Import name -> the pip requirement that provides it.
ENGINE_PACKAGES = {
    "numpy": "numpy",
    "torch": "torch",
    "timm": "timm",
    "safetensors": "safetensors",
    "cv2": "opencv-python-headless",
    "OpenEXR": "OpenEXR",
    "av": "av",
    "scipy": "scipy",
    "platformdirs": "platformdirs",
    "tqdm": "tqdm",
}
TORCH_INDEXES = {
    "cpu": "https://download.pytorch.org/whl/cpu",
    "cuda": "https://download.pytorch.org/whl/cu128",
}
CHECK_TIMEOUT_S = 180.0
EXTENSION_ROOT = Path(__file__).resolve().parents[1]

_CHECK_SCRIPT = """
import importlib, json, sys
versions = {}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
    except Exception as error:
        versions[name] = None
        print(f"{name}: {type(error).__name__}: {error}", file=sys.stderr)
    else:
        versions[name] = str(getattr(module, "__version__", "present"))
print(json.dumps({"python": sys.version.split()[0], "versions": versions}))
"""


def extension_user_path(folder: str) -> str:
    """A folder in the extension's user directory, created on demand."""
    try:
        return bpy.utils.extension_path_user(ADDON_PACKAGE, path=folder, create=True)
    except ValueError:  # loaded as a plain package (scripts/headless.py from a checkout)
        return bpy.utils.user_resource("EXTENSIONS", path=f".user/user_default/depth360/{folder}", create=True)


def site_packages_dir() -> str:
    """Where `install_command` puts the engine's dependencies for this extension."""
    return extension_user_path("site-packages")


def addon_preferences(context=None):
    """The add-on's preferences, or None where it runs without being enabled as an add-on."""
    addon = (context or bpy.context).preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else None


def chosen_python(prefs) -> str:
    """The Python that runs the engine: the external one from the preferences, else Blender's."""
    external = getattr(prefs, "python_path", "") if prefs is not None else ""
    return bpy.path.abspath(external) if external else sys.executable


def engine_environment() -> dict[str, str]:
    """Environment of an engine subprocess: the extension imports as a package, deps on the path."""
    return worker_environment(EXTENSION_ROOT, site_packages_dir())


def engine_package() -> str:
    """The extension's package name inside a worker (its folder's name, e.g. "depth360")."""
    return EXTENSION_ROOT.name


def use_site_packages_in_process() -> None:
    """Let this Python import what was installed for the extension (after its own packages)."""
    folder = site_packages_dir()
    if os.path.isdir(folder) and folder not in sys.path:
        sys.path.append(folder)


@dataclass(frozen=True)
class DependencyReport:
    """What imports in one Python: `versions[name]` is the version, or None if it failed."""

    python: str
    versions: dict[str, str | None] = field(default_factory=dict)
    error: str = ""

    @property
    def missing(self) -> list[str]:
        """Import names that failed (all of them when the check itself failed)."""
        if self.error and not self.versions:
            return list(ENGINE_PACKAGES)
        return [name for name, version in self.versions.items() if version is None]

    @property
    def ok(self) -> bool:
        return not self.error and not self.missing


_REPORTS: dict[str, DependencyReport] = {}


def last_report(python: str) -> DependencyReport | None:
    """The last check of `python` in this session (for drawing; never runs a check)."""
    return _REPORTS.get(python)


def check_dependencies(python: str, modules=tuple(ENGINE_PACKAGES)) -> DependencyReport:
    """Import `modules` in a fresh `python` with the engine's environment; the report is kept."""
    try:
        result = subprocess.run(
            [python, "-c", _CHECK_SCRIPT, *modules], capture_output=True, text=True,
            env=engine_environment(), timeout=CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL,
        )
    except OSError as error:
        report = DependencyReport(python, error=f"cannot run {python}: {error.strerror or error}")
    except subprocess.TimeoutExpired:
        report = DependencyReport(python, error=f"{python} took over {CHECK_TIMEOUT_S:.0f} s to import the engine")
    else:
        lines = result.stdout.strip().splitlines()
        try:
            versions = json.loads(lines[-1])["versions"]
        except (IndexError, ValueError, KeyError):
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            report = DependencyReport(python, error=f"{python} cannot run the check: {last}")
        else:
            report = DependencyReport(python, versions)
    _REPORTS[python] = report
    return report


def install_command(python: str, target: str, torch_build: str = "cpu") -> list[str]:
    """pip command installing the engine's packages into `target` (torch from its CPU or CUDA index)."""
    if torch_build not in TORCH_INDEXES:
        raise ValueError(f"torch_build must be one of {', '.join(TORCH_INDEXES)}, got {torch_build!r}")
    return [
        python, "-m", "pip", "install", "--upgrade", "--no-input", "--disable-pip-version-check",
        "--target", target, "--extra-index-url", TORCH_INDEXES[torch_build], *ENGINE_PACKAGES.values(),
    ]


class DEPTH360_OT_check_dependencies(bpy.types.Operator):
    """Check that torch and the engine's other dependencies import in the chosen Python"""

    bl_idname = "depth360.check_dependencies"
    bl_label = "Check Dependencies"

    def execute(self, context):
        python = chosen_python(addon_preferences(context))
        report = check_dependencies(python)
        if report.error:
            self.report({"ERROR"}, report.error)
            return {"CANCELLED"}
        if report.missing:
            self.report({"WARNING"}, f"{python}: missing {', '.join(report.missing)}")
        else:
            self.report({"INFO"}, f"{python}: all engine dependencies import (torch {report.versions['torch']})")
        return {"FINISHED"}


class DEPTH360_OT_install_dependencies(bpy.types.Operator):
    """Download torch and the engine's other dependencies into the extension's user folder (pip)"""

    bl_idname = "depth360.install_dependencies"
    bl_label = "Install Dependencies"

    _worker: WorkerProcess | None = None
    _timer = None

    def _start(self, context) -> bool:
        prefs = addon_preferences(context)
        if not bpy.app.online_access:
            self.report({"ERROR"}, "Installing downloads packages: allow online access in "
                        "Preferences > System > Network first")
            return False
        if prefs is not None and prefs.python_path:
            self.report({"ERROR"}, f"An external Python is set ({prefs.python_path}): install the "
                        "dependencies into it yourself, or clear it to install for Blender's Python")
            return False
        command = install_command(sys.executable, site_packages_dir(),
                                  getattr(prefs, "torch_build", "cpu"))
        try:
            self._worker = WorkerProcess(command, env=engine_environment())
        except OSError as error:
            self.report({"ERROR"}, str(error))
            return False
        return True

    def _finish(self, context, result) -> set[str]:
        if result.status != "done":
            self.report({"ERROR"}, f"pip failed: {result.message}")
            return {"CANCELLED"}
        report = check_dependencies(sys.executable)
        if not report.ok:
            self.report({"ERROR"}, f"Installed, but still missing: {', '.join(report.missing) or report.error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Installed the engine's dependencies into {site_packages_dir()}")
        return {"FINISHED"}

    def execute(self, context):
        if not self._start(context):
            return {"CANCELLED"}
        return self._finish(context, self._worker.run_to_end(interval_s=0.2))

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        if not self._start(context):
            return {"CANCELLED"}
        context.window_manager.modal_handler_add(self)
        self._timer = context.window_manager.event_timer_add(0.5, window=context.window)
        context.workspace.status_text_set("Depth 360: installing dependencies (ESC cancels)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._worker.cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        self._worker.poll()
        result = self._worker.result()
        if result is None:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        context.workspace.status_text_set(None)
        if result.status == "cancelled":
            self.report({"WARNING"}, "Installing the dependencies was cancelled")
            return {"CANCELLED"}
        return self._finish(context, result)


CLASSES = [DEPTH360_OT_check_dependencies, DEPTH360_OT_install_dependencies]
