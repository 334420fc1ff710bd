"""Operator "Estimate Depth": run the engine on the scene's source, then build mesh and compositor.

Interactive (invoked from the panel): the engine runs in a worker subprocess
(`estimators.cli.worker_protocol`); a timer polls its output, the progress shows in the
panel, the status bar and the window manager's progress; ESC or the panel's Cancel stops
the worker (a worker that has already finished is not cancelled: its outputs are
built); a crash becomes an error report naming the problem; disabling the extension
stops every running job (`stop_all_jobs`: worker, timer, progress, status text).
With "Send Videos to a Ray Cluster" in the preferences, a video or image sequence goes
to the cluster named there (`cluster_options`): the worker is then the cluster job's
driver (`depth360 estimate --cluster ...`, always a worker process) and its progress
lines are those of a single run.
Building after a run is all or nothing (`finish_estimate`). Executed from a script
or headless (`bpy.app.background`, the `bpy` module) it blocks: in-process when the
engine's dependencies import in this Python and no external Python is set, else through
the same worker.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from ..compositing import compositor_tree, depth_mesh
from ..compositing.image_data import CompositingInputError
from ..compositing.scene_transaction import scene_transaction
from ..estimators.cli import worker_protocol
from ..estimators.cli.worker_protocol import WorkerProcess, WorkerResult
from ..estimators.cluster.options import ClusterOptions, parse_cluster
from ..estimators.errors import Depth360Error
from ..estimators.media import video_io
from ..estimators.pipeline.request import EstimateRequest
from . import dependencies

TIMER_INTERVAL_S = 0.1
ENGINE_ITEMS = [
    ("AUTO", "Automatic", "A worker process in the interactive UI; in-process when headless "
     "if the engine imports here and no external Python is set"),
    ("WORKER", "Worker", "Always a worker subprocess"),
    ("IN_PROCESS", "In-Process", "Always inside Blender's Python (blocks)"),
]
MISSING_DEPENDENCY_HINT = " (install the engine's dependencies in the add-on preferences)"

# Interactive runs, one per scene, by `scene.as_pointer()` (the panel shows them).
ACTIVE_JOBS: dict[int, EstimateJob] = {}


class EstimateSetupError(ValueError):
    """The scene's settings cannot start an estimate (the message says what to fix)."""


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".depth360-write-test-")
    except OSError as error:
        raise EstimateSetupError(f"Output folder {folder} is not writable: {error.strerror or error}") from None
    os.close(handle)
    os.remove(probe)


def _check_source(source: Path) -> None:
    if "%" in source.name:
        if not source.parent.is_dir():
            raise EstimateSetupError(f"Source folder {source.parent} not found")
    elif not source.exists():
        raise EstimateSetupError(f"Source file {source} not found")


def request_from_scene(scene: bpy.types.Scene, prefs=None, **overrides) -> EstimateRequest:
    """The estimate request of `scene.depth360` (and the add-on preferences); checks the files.

    Raises EstimateSetupError naming the problem: no source, a missing source, an output
    folder relative to an unsaved .blend, an unwritable output folder; `overrides` replace
    request fields (the operator's own model or device). BadInputError (a ValueError)
    for settings the engine refuses.
    """
    settings = scene.depth360
    if not settings.source_path:
        raise EstimateSetupError("Choose a source image, movie or image sequence first")
    for raw, what in ((settings.source_path, "source"), (settings.output_dir, "output folder")):
        if raw.startswith("//") and not bpy.data.filepath:
            raise EstimateSetupError(f"The {what} {raw} is relative to the .blend file: save it first, "
                                     "or choose an absolute path")
    if not settings.output_dir:
        raise EstimateSetupError("Choose an output folder first")
    source = Path(bpy.path.abspath(settings.source_path))
    _check_source(source)
    output = Path(bpy.path.abspath(settings.output_dir))
    _check_writable(output)
    models_dir = getattr(prefs, "models_dir", "") if prefs is not None else ""
    if prefs is not None and not models_dir:
        models_dir = dependencies.extension_user_path("models")
    fields = dict(
        inputs=(str(source),), output_dir=str(output), model=settings.model, layout=settings.layout,
        views=settings.views, near=settings.near, far=settings.far, input_size=settings.input_size or None,
        device=getattr(prefs, "device", "auto") if prefs is not None else "auto",
        models_dir=bpy.path.abspath(models_dir) if models_dir else None,
        progress="json" if worker_protocol.cli_accepts_progress() else "none",
        overwrite=settings.replace_other_settings,
    )
    fields.update(overrides)
    if fields["model"] == "stereo":
        fields["views"] = None  # stereo matches the whole frame: it has no views
    return EstimateRequest(**fields)


def depth_output_path(request: EstimateRequest) -> Path:
    """The distance file the engine writes for the request's first input (its first frame)."""
    from ..estimators.pipeline.outputs import OutputLayout
    from ..estimators.pipeline.sources import open_source

    first, last = request.frames or (1, None)
    source = Path(request.inputs[0])
    if video_io.is_sequence_path(source) or video_io.is_video_path(source):
        # Named as the engine names them, without decoding a frame (Blender's own Python may
        # lack OpenCV and PyAV, which the worker's has).
        name = video_io.probe(source, sizes=False).name if video_io.is_sequence_path(source) else source.stem
        layout = OutputLayout(Path(request.output_dir) / name, name, False)
        return layout.folder / layout.file_name("distance", first, "exr")
    layout = OutputLayout.for_source(open_source(source), Path(request.output_dir), first, last,
                                     ranged=request.frames is not None)
    return layout.folder / layout.file_name("distance", first, "exr")


@dataclass
class EstimateJob:
    """An estimate running in a worker: its request, process, whether Cancel was pressed, and
    what the modal run set up in the UI (its timer, the workspace showing its status text)."""

    request: EstimateRequest
    worker: WorkerProcess
    scene_name: str
    cancel_requested: bool = False
    timer: object = None  # a bpy.types.Timer
    workspace_name: str = ""

    def step(self, scene: bpy.types.Scene) -> WorkerResult | None:
        """Take the worker's new output into the scene's progress; its result once it ended.

        Cancel stops a worker that is still running; one that has already ended keeps its
        result (a finished job is finished, its outputs get built).
        """
        updates = self.worker.poll()
        if updates:
            show_progress(scene, updates[-1].fraction, updates[-1].describe())
        result = self.worker.result()
        if result is None and self.cancel_requested:
            result = self.worker.cancel()
        return result


def end_job(key: int) -> EstimateJob | None:
    """Take a job out of ACTIVE_JOBS and remove what its start set up: timer, progress, status text."""
    job = ACTIVE_JOBS.pop(key, None)
    if job is None:
        return None
    window_manager = bpy.context.window_manager
    if window_manager is not None:
        if job.timer is not None:
            window_manager.event_timer_remove(job.timer)
        window_manager.progress_end()
    job.timer = None
    workspace = bpy.data.workspaces.get(job.workspace_name) if job.workspace_name else None
    if workspace is not None:
        workspace.status_text_set(None)
    return job


def stop_all_jobs() -> None:
    """Stop every running estimate (the extension is being disabled): kill each worker's
    process group, remove its timer, end the progress, clear the status texts."""
    for key in list(ACTIVE_JOBS):
        job = end_job(key)
        job.worker.cancel()
        scene = bpy.data.scenes.get(job.scene_name)
        if scene is not None:
            scene.depth360.status = ""
            scene.depth360.progress = 0.0


def show_progress(scene: bpy.types.Scene, fraction: float, text: str) -> None:
    """Progress of the running estimate: the scene's progress bar, the status text, the cursor."""
    scene.depth360.progress = fraction
    scene.depth360.status = text
    window_manager = bpy.context.window_manager
    if window_manager is not None:
        window_manager.progress_update(fraction)
        for window in window_manager.windows:
            for area in window.screen.areas:
                if area.type == "VIEW_3D":
                    area.tag_redraw()


def cluster_options(request: EstimateRequest, prefs) -> ClusterOptions | None:
    """The Ray cluster the preferences send a video or image sequence to; None for a still or when
    sending is off. EstimateSetupError for an address that is none."""
    if prefs is None or not getattr(prefs, "use_cluster", False):
        return None
    source = request.inputs[0]
    if not (video_io.is_video_path(source) or video_io.is_sequence_path(source)):
        return None
    text = prefs.cluster_address.strip()
    try:
        address = parse_cluster(text if text.startswith("ray") else f"ray:{text}" if text else "ray")
    except ValueError as error:
        raise EstimateSetupError(f"Cluster address in the preferences: {error}") from None
    return ClusterOptions(address, prefs.cluster_chunk_frames, prefs.cluster_retries)


def start_worker(request: EstimateRequest, prefs, python: str = "",
                 cluster: ClusterOptions | None = None) -> WorkerProcess:
    """The worker process running `request` with `python` (empty: the chosen one), on `cluster` when
    given; OSError if it cannot start."""
    command = worker_protocol.worker_command(
        python or dependencies.chosen_python(prefs), dependencies.engine_package(), request, cluster
    )
    return WorkerProcess(command, env=dependencies.engine_environment(), cwd=request.output_dir)


def worker_error(result: WorkerResult) -> str:
    """The message for a failed worker, with a hint where a dependency is missing."""
    message = result.message
    if "No module named" in message:
        message += MISSING_DEPENDENCY_HINT
    return message


def engine_imports_here() -> bool:
    """Whether this Python can run the engine in-process (torch and OpenCV import)."""
    dependencies.use_site_packages_in_process()
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "cv2"))


def run_in_process(request: EstimateRequest) -> str | None:
    """Run the engine here, through the same pipeline as the worker (blocks); None on success, else the error."""
    dependencies.use_site_packages_in_process()
    try:
        from ..estimators.pipeline import run

        for line in run(replace(request, progress="none")).summary_lines():
            print(line, flush=True)
    except Depth360Error as error:
        return str(error)
    except ImportError as error:
        return f"{error}{MISSING_DEPENDENCY_HINT}"
    except OSError as error:
        return f"depth360: {error}"
    return None


def plate_path(request: EstimateRequest, depth: Path) -> str:
    """The colour image the depth belongs to: the source (an image sequence given as a folder: its
    first file), or for a stereo still its left eye."""
    left_eye = depth.with_name(depth.name.replace(".distance.exr", ".left.png"))
    if request.layout != "mono" and left_eye != depth and left_eye.is_file():
        return str(left_eye)
    source = Path(request.inputs[0])
    if source.is_dir():
        from ..estimators.media import video_io

        return str(video_io.probe(source, sizes=False).files[0])  # Blender's Python may lack OpenCV
    return request.inputs[0]


def finish_estimate(scene: bpy.types.Scene, request: EstimateRequest) -> tuple[str, str]:
    """After a successful run: build what the settings ask for, remember the depth; (level, message).

    All or nothing: if a build fails, the scene is left as it was before the estimate
    (the depth file stays on disk, and the message names it).
    """
    settings = scene.depth360
    depth = depth_output_path(request)
    if not depth.is_file():
        return "ERROR", f"The engine finished but {depth} is missing"
    plate = plate_path(request, depth)
    built = []
    try:
        with scene_transaction(scene):
            if settings.build_mesh_after:
                obj = depth_mesh.build_mesh(plate, str(depth), scene=scene)
                obj["depth360_plate_path"] = plate
                obj["depth360_depth_path"] = str(depth)
                built.append(obj.name)
            if settings.build_compositor_after:
                compositor_tree.build_compositor(plate, str(depth), scene=scene)
                built.append("the compositor")
    except CompositingInputError as error:
        show_progress(scene, 0.0, "Failed")
        return "ERROR", f"Depth written to {depth}, but building failed (the scene is unchanged): {error}"
    settings.depth_path = str(depth)
    show_progress(scene, 1.0, f"Done: {depth.name}")
    extra = f"; built {', '.join(built)}" if built else ""
    return "INFO", f"Depth written to {depth}{extra}"


class DEPTH360_OT_estimate(bpy.types.Operator):
    """Estimate depth for the source footage (a worker process: ESC cancels)"""

    bl_idname = "depth360.estimate"
    bl_label = "Estimate Depth"
    bl_options = {"REGISTER"}

    engine: EnumProperty(name="Engine", items=ENGINE_ITEMS, default="AUTO")
    model: StringProperty(
        name="Model", description="Use this model instead of the scene's "
        "(e.g. a plug-in, python:FILE.py:FACTORY); empty: the scene's model",
    )
    python: StringProperty(
        name="Python", subtype="FILE_PATH",
        description="Run the engine in a worker with this Python; empty: as the preferences say",
    )
    device: StringProperty(name="Device", description="auto, cpu, cuda or mps; empty: the preferences' device")

    _job_key: int = 0
    _cluster: ClusterOptions | None = None  # set by _prepare: where a video goes (None: here)

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.scene.as_pointer() not in ACTIVE_JOBS

    def _prepare(self, context) -> EstimateRequest | None:
        try:
            overrides = {"model": self.model, "device": self.device}
            prefs = dependencies.addon_preferences(context)
            request = request_from_scene(context.scene, prefs,
                                         **{key: value for key, value in overrides.items() if value})
            self._cluster = cluster_options(request, prefs)
            return request
        except (EstimateSetupError, ValueError) as error:
            self.report({"ERROR"}, str(error))
            return None

    def _done(self, context, level: str, message: str) -> set[str]:
        self.report({level}, message)
        return {"FINISHED"} if level == "INFO" else {"CANCELLED"}

    def execute(self, context):
        request = self._prepare(context)
        if request is None:
            return {"CANCELLED"}
        prefs = dependencies.addon_preferences(context)
        python = bpy.path.abspath(self.python) if self.python else ""
        external = bool(python or getattr(prefs, "python_path", ""))
        cluster = getattr(self, "_cluster", None)  # a cluster job's driver always runs in a worker
        in_process = cluster is None and (self.engine == "IN_PROCESS" or (
            self.engine == "AUTO" and not external and engine_imports_here()
        ))
        window_manager = context.window_manager
        window_manager.progress_begin(0.0, 1.0)
        started = time.perf_counter()
        try:
            if in_process:
                error = run_in_process(request)
                if error is not None:
                    self.report({"ERROR"}, error)
                    return {"CANCELLED"}
            else:
                try:
                    worker = start_worker(request, prefs, python, cluster)
                except (OSError, ValueError) as error:  # cannot start, or the install folder is no package name
                    self.report({"ERROR"}, str(error))
                    return {"CANCELLED"}
                scene = context.scene
                result = worker.run_to_end(
                    lambda update: show_progress(scene, update.fraction, update.describe()))
                if result.status != "done":
                    self.report({"ERROR"}, worker_error(result))
                    return {"CANCELLED"}
        finally:
            window_manager.progress_end()
        level, message = finish_estimate(context.scene, request)
        return self._done(context, level, f"{message} ({time.perf_counter() - started:.1f} s)")

    def invoke(self, context, event):
        if bpy.app.background or self.engine == "IN_PROCESS":
            return self.execute(context)
        if not self.start_job(context):
            return {"CANCELLED"}
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def start_job(self, context) -> bool:
        """Start the worker and the timer that polls it (the interactive run); False on an error."""
        request = self._prepare(context)
        if request is None:
            return False
        try:
            python = bpy.path.abspath(self.python) if self.python else ""
            worker = start_worker(request, dependencies.addon_preferences(context), python,
                                  getattr(self, "_cluster", None))
        except (OSError, ValueError) as error:  # cannot start, or the install folder is no package name
            self.report({"ERROR"}, str(error))
            return False
        self._job_key = context.scene.as_pointer()
        job = ACTIVE_JOBS[self._job_key] = EstimateJob(request, worker, context.scene.name)
        show_progress(context.scene, 0.0, "Starting the depth engine")
        window_manager = context.window_manager
        window_manager.progress_begin(0.0, 1.0)
        job.timer = window_manager.event_timer_add(TIMER_INTERVAL_S, window=context.window)
        job.workspace_name = context.workspace.name
        context.workspace.status_text_set("Depth 360: estimating depth (ESC cancels)")
        return True

    def _end_modal(self, context) -> EstimateJob | None:
        return end_job(self._job_key)

    def modal(self, context, event):
        job = ACTIVE_JOBS.get(self._job_key)
        if job is None:  # stopped from outside (the extension was disabled)
            return {"CANCELLED"}
        scene = bpy.data.scenes.get(job.scene_name) or context.scene  # the user may switch scenes
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel_requested = True
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        result = job.step(scene)
        if result is None:
            return {"RUNNING_MODAL"} if event.type == "ESC" else {"PASS_THROUGH"}
        self._end_modal(context)
        if result.status == "cancelled":
            show_progress(scene, 0.0, "Cancelled")
            self.report({"WARNING"}, "Depth estimation cancelled")
            return {"CANCELLED"}
        if result.status != "done":
            show_progress(scene, 0.0, "Failed")
            self.report({"ERROR"}, worker_error(result))
            return {"CANCELLED"}
        return self._done(context, *finish_estimate(scene, job.request))

    def cancel(self, context):  # Blender ends the modal operator (file load, quit)
        job = ACTIVE_JOBS.get(self._job_key)
        if job is not None:
            job.worker.cancel()
            self._end_modal(context)


class DEPTH360_OT_cancel_estimate(bpy.types.Operator):
    """Stop the running depth estimate (its worker and everything it started)"""

    bl_idname = "depth360.cancel_estimate"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and context.scene.as_pointer() in ACTIVE_JOBS

    def execute(self, context):
        ACTIVE_JOBS[context.scene.as_pointer()].cancel_requested = True
        return {"FINISHED"}


CLASSES = [DEPTH360_OT_estimate, DEPTH360_OT_cancel_estimate]
