"""The engine as a worker subprocess: its command line, its progress lines, cancel and crashes.

Blender's interactive UI runs `depth360 estimate` in a child process (DESIGN.md) so that
it stays responsive, ESC cancels, and a crash or out-of-memory in torch does not take
Blender down. This module is the Blender-free half of that:

- the request is the pipeline's own `EstimateRequest` (an operator builds it);
  `request_to_args` is its `depth360 estimate ...` argument list (with
  `--cluster ...` where a video goes to a Ray cluster: `cluster.ClusterOptions`).
- `worker_command` / `worker_environment`: `[python, "-m", "<package>.estimators.cli", ...]`
  and the PYTHONPATH that makes the extension import as a package.
- `parse_progress_line`: one `--progress json` line (see `progress.py`) as a
  `ProgressUpdate`, or None for any other line.
- `WorkerProcess`: starts the command in its own process group, reads stdout and
  stderr on two threads into a queue (so `poll()` never blocks), cancels (terminate,
  then kill after a grace period, the whole group so nothing is orphaned), and turns
  the end of the process into a `WorkerResult` whose `message` names the problem.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..cluster.options import ClusterOptions
from ..pipeline.request import EstimateRequest

CANCEL_GRACE_S = 1.0
# How long the end of a worker waits for the processes of its group a kill has just signalled.
GROUP_EXIT_S = 2.0
KEPT_LINES = 200
_POSIX = os.name == "posix"


def request_to_args(request: EstimateRequest, cluster: ClusterOptions | None = None) -> list[str]:
    """`estimate ...`: the argument list that `request_from_args` (and `cluster_from_args`) turn back
    into `request` (and `cluster`)."""
    args = ["estimate", "-o", str(request.output_dir), "--model", request.model,
            "--projection", request.projection, "--layout", request.layout, "--ipd", repr(float(request.ipd)),
            "--pole-merge", "off" if request.pole_merge is None else ",".join(map(repr, request.pole_merge)),
            "--device", request.device, "--precision", request.precision, "--progress", request.progress,
            "--smoothing", request.smoothing, "--sky", request.sky, "--edges", request.edges]
    optional = {"--models-dir": request.models_dir, "--views": request.views, "--input-size": request.input_size,
                "--save": ",".join(request.save) if request.save is not None else None}
    for option, value in optional.items():
        if value is not None:
            args += [option, str(value)]
    if request.near is not None:
        args += ["--near", repr(float(request.near)), "--far", repr(float(request.far))]
    if request.frames is not None:
        first, last = request.frames
        args += ["--frames", f"{first}-{'' if last is None else last}"]
    flags = {"--no-stabilise": not request.stabilise, "--no-camera-solve": not request.camera_solve,
             "--refine": request.refine, "--overwrite": request.overwrite}
    args += [flag for flag, on in flags.items() if on]
    if cluster is not None:
        args += ["--cluster", cluster.to_cli(), "--chunk-frames", str(cluster.chunk_frames),
                 "--retries", str(cluster.retries)]
    return [*args, "--", *map(str, request.inputs)]


def worker_command(python: str | os.PathLike, package: str, request: EstimateRequest,
                   cluster: ClusterOptions | None = None) -> list[str]:
    """`[python, "-u", "-m", "<package>.estimators.cli", "estimate", ...]` for `request`
    (run on the Ray cluster `cluster` names, when given).

    `package` is the importable name of the extension's root package in the worker
    (its folder name, e.g. "depth360"; see `worker_environment`).
    """
    if not package or not all(part.isidentifier() for part in package.split(".")):
        raise ValueError(f"package must be a dotted Python name, got {package!r}")
    return [os.fspath(python), "-u", "-m", f"{package}.estimators.cli", *request_to_args(request, cluster)]


def worker_environment(extension_root: str | os.PathLike, site_packages: str | os.PathLike | None = None,
                       base: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: the extension's parent folder (so the engine imports as
    the package named like `extension_root`) and `site_packages` (dependencies installed
    for the extension) in front of PYTHONPATH; unbuffered output."""
    env = dict(os.environ if base is None else base)
    paths = [os.fspath(Path(os.path.abspath(extension_root)).parent)]
    if site_packages:
        paths.append(os.fspath(site_packages))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONHOME", None)  # Blender's own PYTHONHOME would break an external Python
    return env


@dataclass(frozen=True)
class ProgressUpdate:
    """One `--progress json` line: `frame` just written, `done` of `total`, rate and ETA."""

    frame: int
    done: int
    total: int
    fps: float | None = None
    eta_s: float | None = None

    @property
    def fraction(self) -> float:
        """Share of the run finished, 0..1 (1 when the total is unknown or zero)."""
        return min(max(self.done / self.total, 0.0), 1.0) if self.total > 0 else 1.0

    def describe(self) -> str:
        """Status text: `Frame 12: 12/60 (3.1 fps, 0:15 left)`."""
        text = f"Frame {self.frame}: {self.done}/{self.total}"
        extra = []
        if self.fps is not None:
            extra.append(f"{self.fps:.2f} fps")
        if self.eta_s is not None:
            minutes, seconds = divmod(int(round(self.eta_s)), 60)
            extra.append(f"{minutes}:{seconds:02d} left")
        return f"{text} ({', '.join(extra)})" if extra else text


def _optional_number(value, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"progress field {key!r} must be a number or null, got {value!r}")
    return float(value)


def parse_progress_line(line: str) -> ProgressUpdate | None:
    """The `ProgressUpdate` of a `--progress json` line; None for any other output line.

    A line that is a JSON object with `frame` and `total` but malformed fields raises
    ValueError (a worker speaking the protocol wrongly is a bug worth seeing).
    """
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "frame" not in data or "total" not in data:
        return None
    integers = {}
    for key in ("frame", "done", "total"):
        value = data.get(key, data["frame"] if key == "done" else None)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"progress field {key!r} must be an integer, got {value!r} in {text}")
        integers[key] = value
    return ProgressUpdate(**integers, fps=_optional_number(data.get("fps"), "fps"),
                          eta_s=_optional_number(data.get("eta_s"), "eta_s"))


@dataclass(frozen=True)
class WorkerResult:
    """How a worker ended: `status` done/failed/cancelled, its exit code, and a message."""

    status: Literal["done", "failed", "cancelled"]
    returncode: int
    message: str
    stdout: tuple[str, ...] = field(default=(), repr=False)
    stderr: tuple[str, ...] = field(default=(), repr=False)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def failure_message(returncode: int, stderr_lines) -> str:
    """One line naming why a worker failed: its last meaningful stderr line, else its exit."""
    last = next((line.strip() for line in reversed(list(stderr_lines))
                 if line.strip() and not line.startswith((" ", "\t", "Traceback", "\r"))), "")
    if returncode < 0:
        killed = f"the depth worker was killed by {_signal_name(-returncode)}"
        if -returncode == getattr(signal, "SIGKILL", 9):
            killed += " (out of memory?)"
        return f"{killed}: {last}" if last else killed
    if last:
        return last
    return f"the depth worker failed with exit status {returncode} and no message"


def _group_running(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (a zombie, which only waits for its parent to
    read its status, does not): read from /proc where there is one, else asked of the kernel."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # gone while being read
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False


class WorkerProcess:
    """A running worker command: non-blocking output, progress, cancel, and its result.

    The process starts in a new process group (POSIX: a new session) so that cancel
    reaches every process it started. Output lines arrive on reader threads; `poll()`
    drains them without blocking and returns the new progress updates.
    """

    def __init__(self, command: list[str], *, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike | None = None):
        if not command:
            raise ValueError("a worker needs a command")
        self.command = list(command)
        self.stdout_lines: deque[str] = deque(maxlen=KEPT_LINES)
        self.stderr_lines: deque[str] = deque(maxlen=KEPT_LINES)
        self.progress: ProgressUpdate | None = None
        self.updates: list[ProgressUpdate] = []  # every update so far, in order
        self.cancelled = False
        self._queue: queue.Queue = queue.Queue()
        self._result: WorkerResult | None = None
        options = {"start_new_session": True} if _POSIX else {
            "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        try:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd=cwd, text=True, encoding="utf-8", errors="replace", bufsize=1, **options,
            )
        except OSError as error:
            raise OSError(f"cannot start the depth worker {self.command[0]}: {error.strerror or error}") from error
        self.pid = self.process.pid
        self._readers = [
            threading.Thread(target=self._read, args=(stream, name), daemon=True,
                             name=f"depth360-worker-{name}")
            for stream, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr"))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, name: str) -> None:
        for line in stream:
            self._queue.put((name, line.rstrip("\n")))
        stream.close()

    def poll(self) -> list[ProgressUpdate]:
        """Take the output that arrived since the last call; the new progress updates."""
        updates = []
        while True:
            try:
                name, line = self._queue.get_nowait()
            except queue.Empty:
                return updates
            if name == "stderr":
                self.stderr_lines.append(line)
                continue
            update = parse_progress_line(line)
            if update is None:
                self.stdout_lines.append(line)
            else:
                self.progress = update
                self.updates.append(update)
                updates.append(update)

    @property
    def running(self) -> bool:
        """True while the worker process has not exited."""
        return self.process.poll() is None

    def _signal_group(self, number: int) -> None:
        if _POSIX:
            try:
                os.killpg(self.pid, number)
            except (ProcessLookupError, PermissionError):
                pass  # the group is gone already
        elif self.process.poll() is None:
            self.process.kill() if number == getattr(signal, "SIGKILL", None) else self.process.terminate()

    def cancel(self, grace_s: float = CANCEL_GRACE_S) -> WorkerResult:
        """Stop the worker and everything it started: terminate, then kill after `grace_s`.

        A worker that has already exited is not cancelled: its result stays what it was
        (a finished run stays "done").
        """
        if self._result is None and self.process.poll() is None:
            self.cancelled = True
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal_group(getattr(signal, "SIGKILL", signal.SIGTERM))
        return self.wait()

    def wait(self, timeout: float | None = None) -> WorkerResult:
        """Wait for the worker to end (TimeoutExpired after `timeout`); its result."""
        if self._result is not None:
            return self._result
        returncode = self.process.wait(timeout=timeout)
        # The leader is gone: kill whatever it left in its group (nothing, normally) and see it
        # gone (a kill takes a moment), then let the readers reach the end of both pipes.
        self._signal_group(getattr(signal, "SIGKILL", signal.SIGTERM))
        deadline = time.monotonic() + GROUP_EXIT_S
        while _POSIX and _group_running(self.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        for reader in self._readers:
            reader.join(timeout=5.0)
        self.poll()
        if returncode == 0:  # finished, even if a cancel came just as it exited
            status, message = "done", "done"
        elif self.cancelled:
            status, message = "cancelled", "cancelled"
        else:
            status, message = "failed", failure_message(returncode, self.stderr_lines)
        self._result = WorkerResult(status, returncode, message,
                                    tuple(self.stdout_lines), tuple(self.stderr_lines))
        return self._result

    def result(self) -> WorkerResult | None:
        """The result once the worker has ended, else None (never blocks)."""
        if self._result is None and self.process.poll() is not None:
            return self.wait()
        return self._result

    def run_to_end(self, on_progress=None, interval_s: float = 0.05) -> WorkerResult:
        """Block until the worker ends, calling `on_progress(update)` for each update."""
        reported = 0
        while True:
            ended = not self.running
            result = self.wait() if ended else None
            self.poll()
            for update in self.updates[reported:]:
                if on_progress is not None:
                    on_progress(update)
            reported = len(self.updates)
            if result is not None:
                return result
            time.sleep(interval_s)


def cli_accepts_progress() -> bool:
    """Whether `depth360 estimate` takes `--progress json` (the worker asks for it when it does)."""
    from .arguments import build_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            build_parser().parse_args(["estimate", "in.png", "-o", "out", "--progress", "json"])
    except SystemExit:
        return False
    return True
