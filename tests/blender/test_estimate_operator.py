"""The "Estimate Depth" operator in real Blender (issue 7, points 5 and 6): errors, worker, cancel, deps.

The engine runs in a worker subprocess. Its Python is the external one named in the
preferences: the main environment's (.venv, which has torch and OpenCV) where the run
must succeed, the bpy 4.2 environment's (.venv-bpy42, which has neither) where it must
fail with a clear message. Estimators are small plug-ins (`python:FILE.py:FACTORY`).
"""

from __future__ import annotations

import importlib
import json
import re
import signal
import time
from pathlib import Path

import bpy
import numpy as np
import pytest

from tests.blender.compositing_helpers import (
    datablock_counts,
    reset_scene,
    scene_state,
    write_plate,
)
from tests.blender.conftest import PACKAGE, REPO

ENGINE_PYTHON = REPO / ".venv" / "bin" / "python"  # torch, OpenCV, OpenEXR: the engine runs
BARE_PYTHON = REPO / ".venv-bpy42" / "bin" / "python"  # numpy and bpy only: the engine cannot

PLUGINS = {
    "constant": """
import numpy as np

class Constant:
    kind = "metric-distance"

    def predict(self, images, rays):
        return np.full(images.shape[:3], 3.0, np.float32)

def make():
    return Constant()
""",
    "oom": """
class OutOfMemory:
    kind = "metric-distance"

    def predict(self, images, rays):
        raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB")

def make():
    return OutOfMemory()
""",
    "killed": """
import os, signal, sys

class Killed:
    kind = "metric-distance"

    def predict(self, images, rays):
        print("allocating 40 GiB", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

def make():
    return Killed()
""",
    "progress": """
import time
import numpy as np
from depth360.estimators.pipeline.progress import Progress  # the worker's stdout is Blender's pipe

class Reporting:
    kind = "metric-distance"

    def predict(self, images, rays):
        progress = Progress(4, "json")
        progress.start()
        for frame in range(1, 4):
            time.sleep(0.3)
            progress.frame_done(frame)
        time.sleep(0.3)
        return np.full(images.shape[:3], 3.0, np.float32)

def make():
    return Reporting()
""",
    "slow": """
import subprocess, sys, time

class Slow:
    kind = "metric-distance"

    def predict(self, images, rays):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(f"child {child.pid}", flush=True)
        time.sleep(60)

def make():
    return Slow()
""",
}


def _module(name: str):
    return importlib.import_module(f"{PACKAGE}.operators.{name}")


@pytest.fixture
def scene(installed_extension, tmp_path):
    scene = reset_scene()
    settings = scene.depth360
    settings.source_path = str(write_plate(tmp_path / "pano.png", _pano()))
    settings.output_dir = str(tmp_path / "out")
    settings.views = "equirect"  # one view: these tests are about the operator, not view fusion
    settings.depth_path = ""
    settings.status = ""
    settings.progress = 0.0
    settings.build_mesh_after = settings.build_compositor_after = True
    bpy.context.preferences.addons[installed_extension].preferences.python_path = str(ENGINE_PYTHON)
    yield scene
    # Fetched again: a test that unregisters and registers the add-on frees the preferences' RNA type, and
    # writing through the object fetched before it is a use after free (a segmentation fault in bpy 4.2).
    bpy.context.preferences.addons[installed_extension].preferences.python_path = ""


def _pano() -> np.ndarray:
    rng = np.random.default_rng(11)
    return rng.uniform(0.1, 0.9, size=(32, 64, 3)).astype(np.float32)


def _plugin(tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}_plugin.py"
    path.write_text(PLUGINS[name])
    return f"python:{path}:make"


def _snapshot(scene) -> tuple:
    settings = scene.depth360
    compositor = getattr(scene, "compositing_node_group", None) if hasattr(scene, "compositing_node_group") \
        else scene.use_nodes
    return (datablock_counts(), settings.depth_path, settings.progress, settings.status,
            scene.camera, compositor, scene.render.engine)


def _expect_error(scene, match: str, **options) -> None:
    """The operator reports an error matching `match` and changes nothing in the scene.

    (An ERROR report raises in `bpy.ops`, so the CANCELLED it returns is not visible here.)
    """
    before = _snapshot(scene)
    with pytest.raises(RuntimeError, match=match):
        bpy.ops.depth360.estimate(**options)
    assert _snapshot(scene) == before


def test_missing_source_file(scene, tmp_path):
    scene.depth360.source_path = str(tmp_path / "nowhere.png")
    _expect_error(scene, f"Source file {tmp_path / 'nowhere.png'} not found")
    assert not (tmp_path / "out").exists()
    scene.depth360.source_path = ""
    _expect_error(scene, "Choose a source")


def test_unwritable_output_folder(scene, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    scene.depth360.output_dir = str(tmp_path / "a-file" / "depth")
    _expect_error(scene, f"Output folder {tmp_path / 'a-file' / 'depth'} is not writable")


def test_output_relative_to_an_unsaved_blend(scene):
    assert bpy.data.filepath == ""
    scene.depth360.output_dir = "//depth/"
    _expect_error(scene, "relative to the .blend file: save it first")


def test_estimate_in_a_worker_builds_mesh_and_compositor(scene, tmp_path):
    started = time.perf_counter()
    result = bpy.ops.depth360.estimate(engine="WORKER", model=_plugin(tmp_path, "constant"))
    print(f"\nworker estimate + mesh + compositor: {time.perf_counter() - started:.2f} s")
    assert result == {"FINISHED"}
    depth = tmp_path / "out" / "pano.distance.exr"
    settings = scene.depth360
    assert settings.depth_path == str(depth) and depth.is_file()
    assert settings.progress == 1.0 and settings.status == "Done: pano.distance.exr"

    mesh = bpy.data.objects["Depth360 Mesh"]
    co = np.empty(len(mesh.data.vertices) * 3, np.float32)
    mesh.data.vertices.foreach_get("co", co)
    np.testing.assert_allclose(np.linalg.norm(co.reshape(-1, 3), axis=1), 3.0, rtol=1e-4)
    assert mesh["depth360_depth_path"] == str(depth)
    assert scene.camera.data.type == "PANO" and scene.render.engine == "CYCLES"
    tree = scene.compositing_node_group if hasattr(scene, "compositing_node_group") else scene.node_tree
    images = {node.image.filepath for node in tree.nodes if node.bl_idname == "CompositorNodeImage"}
    assert images == {settings.source_path, str(depth)}


def test_a_build_failing_after_the_mesh_leaves_the_scene_as_it_was(scene, tmp_path, monkeypatch):
    """Issue 11, point 6: the mesh is built, then the compositor fails (its depth went missing
    in between): no mesh stays, the settings are untouched, and the depth file is named."""
    depth_mesh = importlib.import_module(f"{PACKAGE}.compositing.depth_mesh")
    build_mesh = depth_mesh.build_mesh
    depth = tmp_path / "out" / "pano.distance.exr"

    def build_then_lose_the_depth(*args, **kwargs):
        obj = build_mesh(*args, **kwargs)
        depth.rename(depth.with_name("elsewhere.exr"))
        return obj

    monkeypatch.setattr(depth_mesh, "build_mesh", build_then_lose_the_depth)
    scene.render.engine = "BLENDER_WORKBENCH"
    before, state = _snapshot(scene)[:2], scene_state(scene)
    with pytest.raises(RuntimeError, match=re.escape(f"Depth written to {depth}, but building failed")) as raised:
        bpy.ops.depth360.estimate(engine="WORKER", model=_plugin(tmp_path, "constant"))
    assert "Depth360 Mesh" not in bpy.data.objects
    assert _snapshot(scene)[:2] == before and scene_state(scene) == state
    assert "(the scene is unchanged): " in str(raised.value) and "file not found" in str(raised.value)
    assert scene.depth360.status == "Failed"


@pytest.mark.parametrize(("plugin", "message"), [
    ("oom", "RuntimeError: CUDA out of memory. Tried to allocate 9.00 GiB"),
    ("killed", "the depth worker was killed by SIGKILL (out of memory?): allocating 40 GiB"),
])
def test_a_worker_crash_is_an_error_report(scene, tmp_path, plugin, message):
    _expect_error(scene, re.escape(message),
                  engine="WORKER", model=_plugin(tmp_path, plugin))
    assert "Depth360 Mesh" not in bpy.data.objects


@pytest.mark.slow  # imports torch in a fresh Python for the check
def test_missing_dependencies_are_named(scene, tmp_path, installed_extension):
    prefs = bpy.context.preferences.addons[installed_extension].preferences
    prefs.python_path = str(BARE_PYTHON)
    _expect_error(scene, r"No module named '(cv2|torch|scipy|OpenEXR)' \(install the engine's dependencies",
                  engine="WORKER", model=_plugin(tmp_path, "constant"))

    dependencies = _module("dependencies")
    assert bpy.ops.depth360.check_dependencies() == {"FINISHED"}  # missing ones: a warning
    bare = dependencies.last_report(str(BARE_PYTHON))
    assert {"torch", "cv2", "timm"} <= set(bare.missing) and "numpy" not in bare.missing
    assert not bare.ok
    engine = dependencies.check_dependencies(str(ENGINE_PYTHON))
    assert engine.ok and engine.versions["torch"].startswith("2.")

    prefs.python_path = str(tmp_path / "no-python")
    with pytest.raises(RuntimeError, match="cannot run .*no-python"):
        bpy.ops.depth360.check_dependencies()


def test_installing_needs_online_access_and_blenders_own_python(scene, installed_extension):
    dependencies = _module("dependencies")
    assert not bpy.app.online_access  # tests run offline
    with pytest.raises(RuntimeError, match="allow online access"):
        bpy.ops.depth360.install_dependencies()
    site = dependencies.site_packages_dir()
    assert Path(site).is_dir() and Path(site).name == "site-packages"
    assert not any(Path(site).iterdir())  # nothing was downloaded
    command = dependencies.install_command("/blender/python", site, "cuda")
    assert command[:4] == ["/blender/python", "-m", "pip", "install"]
    assert command[command.index("--target") + 1] == site
    assert "https://download.pytorch.org/whl/cu128" in command
    assert {"torch", "timm", "opencv-python-headless", "OpenEXR"} <= set(command)
    with pytest.raises(ValueError, match="torch_build"):
        dependencies.install_command("/blender/python", site, "rocm")


def _live_processes() -> dict[int, int]:
    """pid -> process group of every live (non-zombie) process, from /proc."""
    processes = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] != "Z":
                processes[int(entry.name)] = int(fields[2])
    return processes


def test_the_interactive_job_shows_progress_and_cancels(scene, tmp_path):
    """The modal operator's job (what its timer runs): progress into the scene, the panel's Cancel."""
    estimate = _module("estimate")
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    request = estimate.request_from_scene(scene, prefs)
    request = estimate.replace(request, model=_plugin(tmp_path, "slow"))
    job = estimate.EstimateJob(request, estimate.start_worker(request, prefs), scene.name)
    key = scene.as_pointer()
    estimate.ACTIVE_JOBS[key] = job
    try:
        assert not bpy.ops.depth360.estimate.poll()  # one estimate per scene at a time
        deadline = time.monotonic() + 60
        while not any(line.startswith("child") for line in job.worker.stdout_lines):
            assert job.step(scene) is None and time.monotonic() < deadline
            time.sleep(0.05)
        child = int(next(line for line in job.worker.stdout_lines if line.startswith("child")).split()[1])
        assert bpy.ops.depth360.cancel_estimate() == {"FINISHED"}
        started = time.perf_counter()
        result = job.step(scene)
        took = time.perf_counter() - started
        print(f"\ncancel from the panel took {took:.3f} s")
        assert took < 2.0 and result.status == "cancelled"
        assert result.returncode in (-signal.SIGTERM, -signal.SIGKILL)
        live = _live_processes()
        assert child not in live and job.worker.pid not in live.values()  # nothing orphaned
    finally:
        estimate.ACTIVE_JOBS.pop(key, None)
    assert bpy.ops.depth360.estimate.poll()

    # Progress lines reach the scene's progress bar and status text.
    update = importlib.import_module(f"{PACKAGE}.estimators.cli.worker_protocol").parse_progress_line(
        '{"frame": 3, "done": 3, "total": 4, "fps": 2.0, "eta_s": 0.5}')
    estimate.show_progress(scene, update.fraction, update.describe())
    assert scene.depth360.progress == pytest.approx(0.75)
    assert scene.depth360.status == "Frame 3: 3/4 (2.00 fps, 0:00 left)"


class _Event:
    def __init__(self, type_: str, value: str = "NOTHING"):
        self.type, self.value = type_, value


def _interactive_operator():
    """The operator's interactive methods on a plain object, as Blender's modal loop calls them.

    The `bpy` module has no event loop, so the test plays it: timer ticks and ESC.
    """
    estimate = _module("estimate")
    cls = estimate.DEPTH360_OT_estimate

    class Interactive:
        engine, model, python, device = "AUTO", "", "", ""

        def __init__(self):
            self.reports = []

        def report(self, level, message):
            self.reports.append((next(iter(level)), message))

    for name in ("start_job", "modal", "_end_modal", "_done", "_prepare", "cancel"):
        setattr(Interactive, name, getattr(cls, name))
    return Interactive()


def _play(operator, until, esc_at: float | None = None, limit_s: float = 60.0):
    """Send timer events (and one ESC after `esc_at` s) until `until(result)`; (result, fractions)."""
    started, fractions = time.monotonic(), []
    while True:
        escape = esc_at is not None and time.monotonic() - started > esc_at
        result = operator.modal(bpy.context, _Event("ESC", "PRESS") if escape else _Event("TIMER"))
        fractions.append(bpy.context.scene.depth360.progress)
        if until(result):
            return result, fractions
        assert time.monotonic() - started < limit_s, operator.reports
        time.sleep(0.05)


def test_the_modal_operator_shows_progress_finishes_and_esc_cancels(scene, tmp_path):
    estimate = _module("estimate")
    ended = {"FINISHED", "CANCELLED"}.intersection
    operator = _interactive_operator()
    operator.model = _plugin(tmp_path, "progress")
    assert operator.start_job(bpy.context)
    assert scene.as_pointer() in estimate.ACTIVE_JOBS and not bpy.ops.depth360.estimate.poll()
    result, fractions = _play(operator, ended)
    assert result == {"FINISHED"}, operator.reports
    steps = [f for f in dict.fromkeys(fractions) if 0 < f < 1]
    assert steps == pytest.approx([0.25, 0.5, 0.75])  # each progress line reached the panel, in order
    assert fractions[-1] == 1.0 and scene.depth360.status == "Done: pano.distance.exr"
    assert operator.reports[-1][0] == "INFO" and "Depth360 Mesh" in bpy.data.objects
    assert scene.as_pointer() not in estimate.ACTIVE_JOBS

    operator = _interactive_operator()
    operator.model = _plugin(tmp_path, "slow")
    operator.start_job(bpy.context)
    worker = estimate.ACTIVE_JOBS[scene.as_pointer()].worker
    _play(operator, lambda _: any(line.startswith("child") for line in worker.stdout_lines))
    child = int(next(line for line in worker.stdout_lines if line.startswith("child")).split()[1])
    started = time.perf_counter()
    result, _ = _play(operator, ended, esc_at=0.0)
    took = time.perf_counter() - started
    print(f"\nESC in the modal operator stopped the worker in {took:.3f} s")
    assert result == {"CANCELLED"} and took < 2.0
    assert operator.reports[-1] == ("WARNING", "Depth estimation cancelled")
    live = _live_processes()
    assert child not in live and worker.pid not in live.values()
    assert scene.depth360.status == "Cancelled" and scene.as_pointer() not in estimate.ACTIVE_JOBS

    operator = _interactive_operator()
    operator.model = _plugin(tmp_path, "oom")
    operator.start_job(bpy.context)
    result, _ = _play(operator, ended)
    assert result == {"CANCELLED"}
    assert operator.reports[-1] == ("ERROR", "RuntimeError: CUDA out of memory. Tried to allocate 9.00 GiB")


def test_esc_after_the_worker_finished_builds_its_outputs(scene, tmp_path):
    """Issue 11, point 8: the worker already exited 0 when ESC (or the panel's Cancel) arrives:
    the job is finished, not cancelled, and its outputs are built into the scene."""
    estimate = _module("estimate")
    depth = tmp_path / "out" / "pano.distance.exr"
    for stop in ("ESC", "Cancel"):
        reset_scene()
        operator = _interactive_operator()
        operator.model = _plugin(tmp_path, "constant")
        assert operator.start_job(bpy.context)
        worker = estimate.ACTIVE_JOBS[scene.as_pointer()].worker
        assert worker.process.wait(timeout=60) == 0  # finished; the modal has not looked yet
        if stop == "ESC":
            result = operator.modal(bpy.context, _Event("ESC", "PRESS"))
        else:
            assert bpy.ops.depth360.cancel_estimate() == {"FINISHED"}
            result = operator.modal(bpy.context, _Event("TIMER"))
        assert result == {"FINISHED"}, (stop, operator.reports)
        assert operator.reports[-1][0] == "INFO" and str(depth) in operator.reports[-1][1]
        assert scene.depth360.status == "Done: pano.distance.exr" and scene.depth360.depth_path == str(depth)
        assert "Depth360 Mesh" in bpy.data.objects and scene.as_pointer() not in estimate.ACTIVE_JOBS


def test_disabling_the_extension_stops_a_running_estimate(scene, tmp_path):
    """Issue 11, point 7: unregister() ends a running job: its worker and the worker's children
    are gone (the process table says so), its timer, progress and status text are cleared."""
    estimate = _module("estimate")
    extension = importlib.import_module(PACKAGE)
    operator = _interactive_operator()
    operator.model = _plugin(tmp_path, "slow")
    assert operator.start_job(bpy.context)
    key = scene.as_pointer()
    job = estimate.ACTIVE_JOBS[key]
    worker = job.worker
    _play(operator, lambda _: any(line.startswith("child") for line in worker.stdout_lines))
    child = int(next(line for line in worker.stdout_lines if line.startswith("child")).split()[1])
    live = _live_processes()
    assert worker.pid in live and child in live and live[child] == worker.pid  # the job's process group
    assert scene.depth360.status != ""
    extension.unregister()
    try:
        live = _live_processes()
        alive = [pid for pid in (worker.pid, child) if pid in live] + \
            [pid for pid, group in live.items() if group == worker.pid]
        assert not alive, f"processes of the job still alive after unregister(): {alive}"
        assert not estimate.ACTIVE_JOBS and job.timer is None
    finally:
        if estimate.ACTIVE_JOBS.pop(key, None) is not None:  # unfixed code: do not leak the worker
            worker.cancel()
        extension.register()
    assert scene.depth360.status == "" and scene.depth360.progress == 0.0
    assert bpy.ops.depth360.estimate.poll()
    assert operator.modal(bpy.context, _Event("TIMER")) == {"CANCELLED"}  # its modal ends quietly


def test_a_stereo_still_builds_with_its_left_eye_as_the_plate(scene, tmp_path):
    """Top-bottom stereo: the depth is the left eye's, so the mesh and compositor use that eye."""
    from tests import groundtruth

    pair = groundtruth.render_stereo("room", width=256, samples=4)
    top_bottom = np.concatenate([pair.left_rgb, pair.right_rgb], axis=0)
    scene.depth360.source_path = str(write_plate(tmp_path / "room_tb.png", top_bottom))
    scene.depth360.layout = "top-bottom"
    try:
        result = bpy.ops.depth360.estimate(engine="WORKER", model="stereo")
    finally:
        scene.depth360.layout = "mono"  # the scene outlives this test
    assert result == {"FINISHED"}
    left = tmp_path / "out" / "room_tb.left.png"
    mesh = bpy.data.objects["Depth360 Mesh"]
    assert mesh["depth360_plate_path"] == str(left)
    tree = scene.compositing_node_group if hasattr(scene, "compositing_node_group") else scene.node_tree
    images = {node.image.filepath for node in tree.nodes if node.bl_idname == "CompositorNodeImage"}
    assert images == {str(left), str(tmp_path / "out" / "room_tb.distance.exr")}


def test_a_video_goes_to_the_ray_cluster_of_the_preferences_with_the_same_progress(scene, tmp_path):
    """Issue 17, point 2: with "Send Videos to a Ray Cluster" on, the Estimate operator sends an image
    sequence to the cluster (no address: one started on this computer for the job); its progress
    reaches the scene as a single run's does, and the first frame's depth is remembered."""
    frames = tmp_path / "shot"
    frames.mkdir()
    for number in range(1, 7):
        write_plate(frames / f"frame_{number:04d}.png", _pano())
    scene.depth360.source_path = str(frames)
    scene.depth360.build_mesh_after = scene.depth360.build_compositor_after = False
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.use_cluster, prefs.cluster_address, prefs.cluster_chunk_frames = True, "", 3
    try:
        operator = _interactive_operator()
        operator.model = _plugin(tmp_path, "constant")
        estimate = _module("estimate")
        assert operator.start_job(bpy.context), operator.reports
        worker = estimate.ACTIVE_JOBS[scene.as_pointer()].worker
        assert worker.command[worker.command.index("--cluster") + 1] == "ray"
        result, fractions = _play(operator, lambda r: r in ({"FINISHED"}, {"CANCELLED"}), limit_s=180)
    finally:
        prefs.use_cluster, prefs.cluster_address, prefs.cluster_chunk_frames = False, "", 100
    assert result == {"FINISHED"}, operator.reports + [("stderr", "\n".join(worker.stderr_lines))]
    done = [u.done for u in worker.updates]
    assert done == list(range(1, 7)) and {u.total for u in worker.updates} == {6}  # one line per frame
    assert fractions[-1] == 1.0 and scene.depth360.status.startswith("Done")
    sidecar = json.loads((tmp_path / "out" / "shot" / "shot.json").read_text())
    assert [c["frames"] for c in sorted(sidecar["cluster"]["chunks"], key=lambda c: c["frames"])] == ["1-3", "4-6"]
    assert scene.depth360.depth_path.endswith("distance_00001.exr")


def test_a_still_is_estimated_here_and_a_bad_cluster_address_is_reported(scene, tmp_path):
    estimate = _module("estimate")
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.use_cluster, prefs.cluster_address = True, "head:notaport"
    try:
        request = estimate.request_from_scene(scene, prefs)
        assert estimate.cluster_options(request, prefs) is None  # a still: no chunks to spread
        frames = tmp_path / "shot"
        frames.mkdir()
        write_plate(frames / "frame_0001.png", _pano())
        scene.depth360.source_path = str(frames)
        with pytest.raises(estimate.EstimateSetupError, match="Cluster address in the preferences"):
            estimate.cluster_options(estimate.request_from_scene(scene, prefs), prefs)
        prefs.cluster_address = "10.0.0.5:6379"
        options = estimate.cluster_options(estimate.request_from_scene(scene, prefs), prefs)
        assert options.address == "10.0.0.5:6379" and options.to_cli() == "ray:10.0.0.5:6379"
    finally:
        prefs.use_cluster, prefs.cluster_address = False, ""


VIDEO_MODELS = {
    "video-depth-anything-small": "Apache-2.0", "video-depth-anything-base": "CC-BY-NC-4.0",
    "video-depth-anything-large": "CC-BY-NC-4.0", "video-depth-anything-metric-small": "Apache-2.0",
    "video-depth-anything-metric-base": "CC-BY-NC-4.0", "video-depth-anything-metric-large": "CC-BY-NC-4.0",
}


def test_the_panel_lists_the_video_models_with_their_licences(scene):
    items = {item.identifier: item for item in scene.depth360.bl_rna.properties["model"].enum_items}
    try:
        for name, licence in VIDEO_MODELS.items():
            assert licence in items[name].description, name
            assert ("non-commercial" in items[name].description) == (licence != "Apache-2.0")
            scene.depth360.model = name  # selectable
    finally:
        scene.depth360.model = "depth-anything-v2-small"
    assert scene.depth360.input_size == 0  # the model's own network size unless the artist picks one


@pytest.fixture
def vda_models(tmp_path_factory):
    """A models folder holding Video Depth Anything Small's official file, made from the reference
    fixture's weights by the engine's Python (this Blender's may have no torch)."""
    import subprocess

    folder = tmp_path_factory.mktemp("models")
    code = ("import sys; from tests.reference_fixtures import write_official_checkpoint as write; "
            "write('video_depth_anything_vits', sys.argv[1])")
    made = subprocess.run([str(ENGINE_PYTHON), "-c", code, str(folder)], cwd=REPO, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    return folder


def test_a_video_estimate_with_video_depth_anything_from_the_panel(scene, tmp_path, vda_models, installed_extension):
    """The panel's model list, a 360 image sequence, the worker: Video Depth Anything's windows and
    view streams run, the depth of every frame is written and the mesh follows it."""
    rng = np.random.default_rng(7)
    shot = tmp_path / "shot"
    shot.mkdir()
    for number in range(1, 4):
        write_plate(shot / f"shot_{number:04d}.png", rng.uniform(0.1, 0.9, size=(32, 64, 3)).astype(np.float32))
    settings = scene.depth360
    settings.source_path = str(shot / "shot_%04d.png")
    settings.model, settings.views, settings.input_size = "video-depth-anything-small", "cube", 28
    settings.build_compositor_after = False
    prefs = bpy.context.preferences.addons[installed_extension].preferences
    prefs.models_dir = str(vda_models)
    try:
        result = bpy.ops.depth360.estimate(engine="WORKER")
    finally:
        prefs.models_dir = ""
        settings.input_size = 0
        settings.model = "depth-anything-v2-small"
    assert result == {"FINISHED"}
    out = tmp_path / "out" / "shot"
    assert settings.depth_path == str(out / "distance_00001.exr")
    assert all((out / f"distance_{n:05d}.exr").is_file() for n in range(1, 4))
    sidecar = (out / "shot.json").read_text()
    assert '"video-depth-anything-small"' in sidecar and '"equirect view streams"' in sidecar
    assert "Depth360 Mesh" in bpy.data.objects
