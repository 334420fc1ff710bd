"""The worker protocol: progress lines, cancel within 2 s with nothing orphaned, crashes as messages.

The worker here is a small real Python script (written by the tests) that speaks the
engine's own `--progress json` format through `estimators.progress.Progress`, plus the
real `depth360` CLI run the way Blender runs it.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth360.estimators import cli
from depth360.estimators.cli.worker_protocol import (
    ProgressUpdate,
    WorkerProcess,
    cli_accepts_progress,
    failure_message,
    parse_progress_line,
    worker_command,
    worker_environment,
)
from depth360.estimators.media.image_io import read_exr
from depth360.estimators.pipeline import EstimateRequest
from depth360.estimators.pipeline.progress import Progress

REPO = Path(__file__).resolve().parents[2]

FAKE_WORKER = """
    import os, signal, subprocess, sys, time
    from depth360.estimators.pipeline.progress import Progress

    mode = sys.argv[1]
    if mode == "progress":
        frames, delay = int(sys.argv[2]), float(sys.argv[3])
        print("starting", flush=True)
        print("a warning on stderr", file=sys.stderr, flush=True)
        progress = Progress(frames, "json")
        progress.start()
        for number in range(1, frames + 1):
            time.sleep(delay)
            progress.frame_done(number)
        print("finished", flush=True)
    elif mode in ("hang", "hang-ignoring-term"):
        if mode == "hang-ignoring-term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(f"child {child.pid}", flush=True)
        progress = Progress(1000, "json")
        progress.start()
        for number in range(1, 1001):
            time.sleep(0.02)
            progress.frame_done(number)
    elif mode == "crash":
        print("Traceback (most recent call last):", file=sys.stderr)
        print('  File "engine.py", line 1, in <module>', file=sys.stderr)
        print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr, flush=True)
        sys.exit(1)
    elif mode == "killed":
        print("loading weights", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def fake_worker(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("worker") / "fake_worker.py"
    path.write_text(textwrap.dedent(FAKE_WORKER))
    return path


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`, read from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] != "Z"


def test_progress_lines_of_the_engine_parse_exactly():
    out = io.StringIO()
    progress = Progress(3, "json", stdout=out)
    progress.skipped(1)  # resumed frames print no line
    progress.start()
    progress.frame_done(2)
    progress.frame_done(3)
    updates = [parse_progress_line(line) for line in out.getvalue().splitlines()]
    assert [(u.frame, u.done, u.total) for u in updates] == [(2, 2, 3), (3, 3, 3)]
    assert all(u.fps is None or u.fps > 0 for u in updates)
    assert updates[-1].fraction == 1.0 and updates[0].fraction == pytest.approx(2 / 3)

    assert parse_progress_line("photo.png: photo.distance.exr in out (0.20 s)") is None
    assert parse_progress_line('{"not": "progress"}') is None
    assert parse_progress_line("{broken json}") is None
    assert parse_progress_line('{"frame": 4, "total": 9, "fps": null, "eta_s": null}') == \
        ProgressUpdate(frame=4, done=4, total=9)
    with pytest.raises(ValueError, match="'total' must be an integer"):
        parse_progress_line('{"frame": 1, "done": 1, "total": "ten"}')
    assert "3.10 fps" in ProgressUpdate(12, 12, 60, 3.1, 15.5).describe()


def test_request_is_what_the_cli_parses():
    request = EstimateRequest(
        inputs=("/footage/pano.png", "-starts-like-an-option.png"), output_dir="/out", model="midas-dpt-large-384",
        views="ico", near=0.5, far=80.0, frames=(2, 9), save=("distance", "mask"), device="cpu",
        models_dir="/models", smoothing="median", stabilise=False, camera_solve=False, overwrite=True,
        input_size=364,
    )
    args = cli.build_parser().parse_args(cli.request_to_args(request))
    assert args.command == "estimate" and args.inputs == ["/footage/pano.png", "-starts-like-an-option.png"]
    assert (args.output, args.model, args.layout, args.views) == ("/out", "midas-dpt-large-384", "mono", "ico")
    assert (args.near, args.far, args.frames, args.save) == (0.5, 80.0, "2-9", ("distance", "mask"))
    assert (args.device, args.models_dir, args.projection, args.input_size) == ("cpu", "/models", "equirect", 364)
    assert cli.request_from_args(args) == request
    stereo = EstimateRequest(inputs=("tb.png",), output_dir="/out", model="stereo", layout="top-bottom",
                             ipd=0.07, pole_merge=None, frames=(3, None), progress="json")
    assert cli.request_from_args(cli.build_parser().parse_args(cli.request_to_args(stereo))) == stereo
    command = worker_command("/usr/bin/python3", "depth360", request)
    assert command[:4] == ["/usr/bin/python3", "-u", "-m", "depth360.estimators.cli"]
    assert command[4:] == cli.request_to_args(request)
    for bad, message in (({"near": 1.0}, "--near and --far"), ({"frames": (5, 2)}, "frames"),
                         ({"inputs": ()}, "at least one input"), ({"model": "stereo"}, "--model stereo"),
                         ({"layout": "top-bottom", "projection": "perspective"}, "stereo-guided"),
                         ({"input_size": 8}, "--input-size 8"), ({"input_size": 300.5}, "whole number")):
        with pytest.raises(ValueError, match=message):
            EstimateRequest(**{"inputs": ("a.png",), "output_dir": "o", **bad})
    with pytest.raises(ValueError, match="dotted Python name"):
        worker_command("python", "bl-ext.depth360", request)


def test_worker_environment_imports_the_extension_folder_as_a_package(tmp_path):
    extensions = tmp_path / "extensions"
    extensions.mkdir()
    (extensions / "depth360").symlink_to(REPO, target_is_directory=True)
    env = worker_environment(extensions / "depth360", tmp_path / "site-packages",
                             base={**os.environ, "PYTHONPATH": "/elsewhere", "PYTHONHOME": "/blender"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(extensions), str(tmp_path / "site-packages"), "/elsewhere"]
    assert "PYTHONHOME" not in env
    result = subprocess.run(
        [sys.executable, "-c", "import depth360.estimators.cli as c, sys; print(c.__file__); "
         "print('bpy' in sys.modules)"], env=env, capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(extensions / "depth360" / "estimators" / "cli" / "__init__.py"), "False"]


def test_progress_arrives_in_order_without_blocking(fake_worker):
    worker = WorkerProcess([sys.executable, "-u", str(fake_worker), "progress", "6", "0.05"])
    started = time.perf_counter()
    assert worker.poll() == []  # never blocks, even before the first line
    assert time.perf_counter() - started < 0.05
    seen = []
    result = worker.run_to_end(seen.append, interval_s=0.02)
    assert result.status == "done" and result.returncode == 0 and result.message == "done"
    assert [u.frame for u in seen] == [1, 2, 3, 4, 5, 6]
    assert [u.done for u in seen] == sorted(u.done for u in seen) and seen[-1].fraction == 1.0
    assert seen[-1].fps is not None and 5 < seen[-1].fps < 40
    assert worker.progress == seen[-1] == worker.updates[-1]
    assert list(result.stdout) == ["starting", "finished"]  # progress lines are not kept as output
    assert "a warning on stderr" in result.stderr
    assert _group_members(worker.pid) == []


@pytest.mark.parametrize("mode", ["hang", "hang-ignoring-term"])
def test_cancel_stops_the_worker_and_its_children_within_2_s(fake_worker, mode):
    worker = WorkerProcess([sys.executable, "-u", str(fake_worker), mode])
    deadline = time.monotonic() + 20
    while worker.progress is None or worker.progress.frame < 3:
        worker.poll()
        assert worker.running and time.monotonic() < deadline
        time.sleep(0.01)
    child = int(next(line for line in worker.stdout_lines if line.startswith("child")).split()[1])
    assert sorted(_group_members(worker.pid)) == sorted([worker.pid, child])

    started = time.perf_counter()
    result = worker.cancel(grace_s=0.5)
    took = time.perf_counter() - started
    print(f"\ncancel ({mode}) took {took:.3f} s")
    assert took < 2.0
    assert result.status == "cancelled" and result.message == "cancelled"
    expected_code = -signal.SIGTERM if mode == "hang" else -signal.SIGKILL
    assert result.returncode == expected_code
    assert not worker.running and not _alive(child) and _group_members(worker.pid) == []
    assert worker.cancel() is result  # a second cancel is harmless


def test_cancel_after_the_worker_finished_keeps_it_done(fake_worker):
    """A worker that already exited 0 is finished: a late cancel (ESC just after) changes nothing."""
    worker = WorkerProcess([sys.executable, "-u", str(fake_worker), "progress", "2", "0.01"])
    assert worker.process.wait(timeout=20) == 0
    result = worker.cancel()
    assert result.status == "done" and result.returncode == 0 and result.message == "done"
    assert not worker.cancelled and worker.result() is result
    assert [update.frame for update in worker.updates] == [1, 2]


def test_a_crash_becomes_the_message_naming_the_problem(fake_worker):
    result = WorkerProcess([sys.executable, str(fake_worker), "crash"]).run_to_end()
    assert result.status == "failed" and result.returncode == 1
    assert result.message == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"

    killed = WorkerProcess([sys.executable, str(fake_worker), "killed"])
    result = killed.run_to_end()
    assert result.status == "failed" and result.returncode == -signal.SIGKILL
    assert result.message == "the depth worker was killed by SIGKILL (out of memory?): loading weights"
    assert _group_members(killed.pid) == []
    assert failure_message(3, []) == "the depth worker failed with exit status 3 and no message"


def test_a_missing_python_is_a_clear_error(tmp_path):
    with pytest.raises(OSError, match="cannot start the depth worker .*nope"):
        WorkerProcess([str(tmp_path / "nope"), "-c", "pass"])


CONSTANT_PLUGIN = """
import numpy as np

class Constant:
    kind = "metric-distance"

    def predict(self, images, rays):
        return np.full(images.shape[:3], 4.0, np.float32)

def make():
    return Constant()
"""


def test_the_real_cli_as_a_worker(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, size=(32, 64, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "pano.png"), rgb)
    (tmp_path / "plugin.py").write_text(CONSTANT_PLUGIN)
    has_progress = cli_accepts_progress()  # the flag is the CLI owner's to wire
    request = EstimateRequest(inputs=(str(tmp_path / "pano.png"),), output_dir=str(tmp_path / "out"),
                              model=f"python:{tmp_path / 'plugin.py'}:make", views="equirect",
                              progress="json" if has_progress else "none")
    env = worker_environment(REPO)  # the repository folder as the package (named after it)
    worker = WorkerProcess(worker_command(sys.executable, REPO.name, request), env=env, cwd=tmp_path)
    result = worker.run_to_end()
    assert result.status == "done", result.message
    np.testing.assert_allclose(read_exr(tmp_path / "out" / "pano.distance.exr"), 4.0, rtol=1e-5)
    assert any("pano.distance.exr" in line for line in result.stdout)
    if has_progress:  # the flag is the CLI owner's; once it exists, stills report progress too
        assert worker.updates and worker.updates[-1].fraction == 1.0

    missing = EstimateRequest(inputs=(str(tmp_path / "gone.png"),), output_dir=str(tmp_path / "out"))
    result = WorkerProcess(worker_command(sys.executable, REPO.name, missing), env=env).run_to_end()
    assert result.status == "failed" and result.returncode == 2
    assert result.message == f"depth360: error: input {tmp_path / 'gone.png'} does not exist"


def test_a_group_counts_as_running_until_only_zombies_are_left():
    """What the end of a worker waits for: a killed process takes a moment to go, and an orphan that
    has ended stays a zombie until its new parent reads it (here, maybe never)."""
    from depth360.estimators.cli.worker_protocol import _group_running

    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', "
         "'import time; time.sleep(0.3)']); print(c.pid, flush=True)"],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    orphan = int(leader.stdout.readline())
    leader.wait()
    leader.stdout.close()
    assert _alive(orphan) and _group_running(leader.pid)  # the leader is gone, its child still sleeps
    deadline = time.monotonic() + 10
    while _group_running(leader.pid):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not _alive(orphan) and _group_members(leader.pid) == []
