"""The driver of a cluster job: connect, plan, check the nodes, run the chunks, assemble.

`run_on_cluster(request, options)` is `pipeline.run` spread over a Ray cluster:

1. connect (cluster.options: a local cluster, `HOST:PORT`, `ray://HOST:PORT`); an
   address that does not answer fails within `REACH_TIMEOUT_S` + `CONNECT_TIMEOUT_S`;
2. plan (a task on the cluster, which sees the files): every input's range, the frames
   already complete, and the resume rule of pipeline.resume: a rerun whose options
   differ stops (exit 2) before anything is written, `--overwrite` clears once;
3. probe every node that can run a chunk: it must see the same output folder (a marker
   the plan wrote), write there, see the inputs and the weights; a node that cannot is
   named in the error;
4. chunks (cluster.plan): each a `--frames A-B` run of the one pipeline as a Ray task
   asking for one GPU where the cluster has GPUs, one CPU otherwise; their frames go to
   one progress (cluster.board); a chunk whose task fails or whose node dies is run
   again, up to `retries` more times, resuming from its finished frames; bad input or
   missing weights stop the job at once;
5. assemble (cluster.assemble): each video's sidecar and preview MP4.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import Depth360Error
from ..pipeline.progress import Progress
from ..pipeline.request import EstimateRequest
from ..pipeline.run import RunResult, SourceResult
from . import assemble as assembly
from . import tasks
from .board import ProgressBoard
from .options import ClusterOptions, ray_module
from .plan import Chunk, SourcePlan, chunks_to_run

REACH_TIMEOUT_S = 5.0  # a TCP connection to the address
CONNECT_TIMEOUT_S = 90.0  # joining once the address answers as gRPC (a Ray Client server starts a process per job)
# A Ray Client join that the server could not start is tried again while this much time is left.
CLIENT_RETRY_MARGIN_S = 35.0
CLIENT_RETRY_PAUSE_S = 2.0
POLL_S = 0.2
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20
HEAD_RESOURCE = "node:__internal_head__"  # Ray's resource of the head node
FATAL_EXIT_STATUSES = (2, 3)  # bad input, weights missing: the same on every try


class ClusterError(Depth360Error):
    """The cluster cannot be reached or joined, or a chunk failed on every try (exit 1)."""


@dataclass(frozen=True)
class ClusterRunResult(RunResult):
    """A cluster job's result: `RunResult` and how the job was spread."""

    address: str = ""
    chunks: int = 0
    nodes: tuple[str, ...] = ()
    retried: int = 0

    def summary_lines(self) -> list[str]:
        where = "on no node (nothing to compute)" if not self.nodes else \
            f"on {len(self.nodes)} node{'s' * (len(self.nodes) != 1)} ({', '.join(self.nodes)})"
        retried = f", {self.retried} tried again" if self.retried else ""
        return [*super().summary_lines(), f"cluster {self.address}: {self.chunks} chunk(s) {where}{retried}"]


@dataclass
class Attempt:
    """One try of a chunk: which try it is, and where it ran (once it started)."""

    chunk: Chunk
    number: int
    key: str
    where: str = "a node not known yet"
    outcome: dict = field(default_factory=dict)


def _last_line(error: BaseException) -> str:
    """The last line of the error (of a server's traceback: its exception)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(error).__name__


def _first_line(error: BaseException) -> str:
    """The error's first line, cut to its first sentence where it is long."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    if len(line) > 160 and ". " in line:
        line = line.split(". ", 1)[0]
    return line[:300]


def _reachable(options: ClusterOptions) -> None:
    host, port = options.host_port()
    try:
        with socket.create_connection((host, port), timeout=REACH_TIMEOUT_S) as connection:
            answered = _answers_grpc(connection)
    except OSError as error:
        reason = f"no answer within {REACH_TIMEOUT_S:.0f} s" if isinstance(error, TimeoutError) else \
            (error.strerror or str(error))
        raise ClusterError(f"cannot reach {options.describe()}: {reason} (is "
                           "`ray start --head` running there, and its port open to this machine?)") from None
    if not answered:
        raise ClusterError(f"{options.describe()} did not let this process join within {REACH_TIMEOUT_S:.0f} s: "
                           "it accepts connections but does not answer as a Ray head's GCS or Ray Client server "
                           "(is that the port of `ray start --head --port`, or of its Ray Client server for ray://?)")


# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS and Ray Client
# server) answers with its own SETTINGS at once; a TLS server answers or closes.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _answers_grpc(connection: socket.socket) -> bool:
    """Whether the server at the other end answers (or closes) within REACH_TIMEOUT_S of a gRPC hello."""
    connection.settimeout(REACH_TIMEOUT_S)
    try:
        connection.sendall(_HTTP2_HELLO)
        connection.recv(1)
    except TimeoutError:
        return False
    except OSError:
        return True  # reset or closed: something is there; ray.init says what
    return True


def _local_gpus(request: EstimateRequest) -> int:
    if request.device not in ("auto", "cuda") or request.stereo:
        return 0
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no usable CUDA: a CPU cluster
        return 0


def _init_arguments(options: ClusterOptions, request: EstimateRequest) -> dict:
    common = {"log_to_driver": False, "logging_level": logging.WARNING, "namespace": "depth360"}
    if not options.local:
        return {"address": options.address, **common}
    gpus = _local_gpus(request)
    return {"address": "local", "num_cpus": max(1, gpus), "num_gpus": gpus, "include_dashboard": False,
            "object_store_memory": LOCAL_OBJECT_STORE_BYTES, "_system_config": {"worker_niceness": 0}, **common}


class _JoiningThread(logging.Filter):
    """Ray's note that a driver joining from another thread keeps the default SIGTERM handler
    (it does: a terminated job is resumed by its rerun) is noise on the job's stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def connect(options: ClusterOptions, request: EstimateRequest):
    """Join (or start) the cluster; the `ray` module. ClusterError naming the address on failure."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the cluster
    single = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # 0: a cluster of this machine alone, on the loopback only
    added = options.local and single not in os.environ and "ray" not in sys.modules
    if added:
        os.environ[single] = "0"
    try:
        ray = ray_module()
    except Depth360Error:
        if added:
            del os.environ[single]
        raise
    arguments = _init_arguments(options, request)
    if options.local:  # in this thread: the processes Ray starts die with the thread that started them
        ray.init(**arguments)
        return ray
    if options.host_port() is not None:
        _reachable(options)
    done, errors = threading.Event(), []
    logging.getLogger("ray._private.worker").addFilter(_JoiningThread())

    deadline = time.monotonic() + CONNECT_TIMEOUT_S

    def join() -> None:
        try:
            while True:
                try:
                    ray.init(**arguments)
                    return
                except ConnectionAbortedError as error:
                    # The Ray Client server could not start this client's server process in time
                    # (a busy head): a new join starts a new one.
                    if time.monotonic() > deadline - CLIENT_RETRY_MARGIN_S:
                        raise
                    print(f"warning: the Ray Client server of {options.describe()} could not start a session "
                          f"({_last_line(error)}); joining again", file=sys.stderr, flush=True)
                    time.sleep(CLIENT_RETRY_PAUSE_S)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            errors.append(error)
        finally:
            done.set()

    threading.Thread(target=join, name="depth360-ray-init", daemon=True).start()
    if not done.wait(CONNECT_TIMEOUT_S):
        raise ClusterError(f"{options.describe()} did not let this process join within {CONNECT_TIMEOUT_S:.0f} s "
                           "(is that the port of the head's GCS (`ray start --head --port`), or of its Ray Client "
                           "server for ray://? are this machine and the cluster on the same Ray version?)")
    if errors:
        error = errors[0]
        reason = _first_line(error) + (f" {_last_line(error)}" if isinstance(error, ConnectionAbortedError) else "")
        raise ClusterError(f"cannot join {options.describe()}: {reason}") from None
    return ray


class ClusterJob:
    """One request run on a cluster (module docstring); `run()` returns a ClusterRunResult."""

    def __init__(self, request: EstimateRequest, options: ClusterOptions, *,
                 stdout: TextIO | None = None, stderr: TextIO | None = None):
        self.request = request
        self.options = options
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.owners: set[str] = set()
        self.attempts: dict[str, Attempt] = {}
        self.done: dict[int, set[int]] = {}
        self.outcomes: dict[int, list[dict]] = {}
        self.records: list[tuple[int, dict]] = []
        self.nodes_used: dict[str, None] = {}
        self.said: set[str] = set()
        self.retried = 0

    def run(self) -> ClusterRunResult:
        self.request.check()
        self.started = time.perf_counter()
        self.ray = connect(self.options, self.request)
        try:
            return self._run()
        finally:
            self.ray.shutdown()

    def _run(self) -> ClusterRunResult:
        ray = self.ray
        self.gpu = bool(ray.cluster_resources().get("GPU", 0)) and self.request.device in ("auto", "cuda") \
            and not self.request.stereo
        self.remote = {name: ray.remote(function) for name, function in (
            ("plan", tasks.plan_job), ("probe", tasks.probe_node), ("unmark", tasks.remove_marker),
            ("chunk", tasks.run_chunk), ("assemble", assembly.assemble))}
        plans, notes = self._plan()
        self.reporter = Progress(sum(p.total for p in plans), self.request.progress, stdout=self.stdout,
                                 stderr=self.stderr, label=plans[0].name if len(plans) == 1 else f"{len(plans)} inputs")
        try:
            self.reporter.skipped(sum(len(p.complete) for p in plans))
            chunks = {p.index: chunks_to_run(p, self.options.chunk_frames) for p in plans}
            self._dispatch([c for _, todo in chunks.values() for c in todo], plans)
        finally:
            self.reporter.finish()
        finals = self._assemble(plans, chunks, notes)
        return ClusterRunResult(tuple(self._result(p, finals.get(p.index, {})) for p in plans),
                                address=self.options.to_cli(), chunks=sum(len(t) for _, t in chunks.values()),
                                nodes=tuple(self.nodes_used), retried=self.retried)

    def _get(self, ref, what: str):
        """`ray.get(ref)`; the engine's own error as it was raised on the node, else a ClusterError."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, Depth360Error):
                raise cause from None
            raise ClusterError(f"{what} failed: {_first_line(cause or error)}{self._import_hint(error)}") from None
        except self.ray.exceptions.RayError as error:
            raise ClusterError(f"{what} failed: {_first_line(error)}{self._import_hint(error)}") from None

    @staticmethod
    def _import_hint(error: BaseException) -> str:
        if "No module named" in str(error):
            return (" (every node needs the engine installed, importable under the same package name and at the "
                    "same version as on this machine)")
        return ""

    def _plan(self) -> tuple[list[SourcePlan], list[str]]:
        token = f"{os.getpid()}-{time.time_ns()}"
        marker = str(Path(self.request.output_dir) / f".depth360-cluster-{token}")
        plans, notes = self._get(self.remote["plan"].options(**self._chunk_resources()).remote(
            self.request, marker, token), "planning the job")
        try:
            self._probe(plans, marker, token)
        finally:
            self.ray.get(self.remote["unmark"].options(num_cpus=0).remote(marker))
        return plans, notes

    def _chunk_resources(self) -> dict:
        return {"num_cpus": 1, "num_gpus": 1 if self.gpu else 0, "max_retries": 0}

    def _probe(self, plans: list[SourcePlan], marker: str, token: str) -> None:
        """Every node that can run a chunk sees the output folder, writes there, sees inputs and weights."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        need = "GPU" if self.gpu else "CPU"
        nodes = [n for n in self.ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(need, 0) >= 1]
        if not nodes:
            raise ClusterError(f"{self.options.describe()} has no node with a {need} to run chunks on")
        refs = [self.remote["probe"].options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote(self.request, plans, marker, token, tasks.describe_node(n)) for n in nodes]
        for node, ref in zip(nodes, refs, strict=True):
            identity = self._get(ref, f"checking node {tasks.describe_node(node)}")
            if identity["version"] != tasks.__version__:
                raise ClusterError(f"node {tasks.describe_node(node)} runs engine version {identity['version']}, "
                                   f"this machine {tasks.__version__}: install the same version on every node")

    def _submit(self, chunk: Chunk, plans: list[SourcePlan], number: int) -> tuple[object, Attempt]:
        key = f"{chunk.source}:{chunk.first}-{chunk.last}#{number}"
        attempt = self.attempts[key] = Attempt(chunk, number, key)
        ref = self.remote["chunk"].options(**self._chunk_resources()).remote(
            self.request, plans[chunk.source], chunk, self.board, key)
        return ref, attempt

    def _dispatch(self, chunks: list[Chunk], plans: list[SourcePlan]) -> None:
        """Run every chunk to the end, trying a failed one again; the first hopeless failure is raised."""
        if not chunks:
            return
        self.plans = plans
        self.board = self._board()
        pending = dict(self._submit(chunk, plans, 1) for chunk in chunks)
        try:
            while pending:
                ready, _ = self.ray.wait(list(pending), num_returns=len(pending), timeout=POLL_S)
                self._drain()
                for ref in ready:
                    attempt = pending.pop(ref)
                    again = self._finished(ref, attempt)
                    if again is not None:
                        new_ref, new_attempt = self._submit(attempt.chunk, plans, attempt.number + 1)
                        pending[new_ref] = new_attempt
            self._drain()
        except BaseException:
            for ref in pending:
                self.ray.cancel(ref, force=True)
            raise

    def _board(self):
        """The job's progress board, on the head node (whose loss ends the cluster anyway), restarted
        (empty) if it dies all the same: every chunk's outcome carries its frames as well."""
        return self.ray.remote(ProgressBoard).options(
            num_cpus=0, resources={HEAD_RESOURCE: 0.001}, max_restarts=-1, max_task_retries=-1).remote()

    def _finished(self, ref, attempt: Attempt) -> Attempt | None:
        """Take a chunk's end: its outcome, or a failure; the attempt to make again, or None."""
        label = attempt.chunk.label(self.plans[attempt.chunk.source].name)
        try:
            outcome = self.ray.get(ref)
        except self.ray.exceptions.RayError as error:
            cause = getattr(error, "cause", None) if isinstance(error, self.ray.exceptions.RayTaskError) else None
            if isinstance(cause, Depth360Error) and cause.exit_status in FATAL_EXIT_STATUSES:
                raise cause from None
            reason = _first_line(cause or error) + self._import_hint(error)
            if attempt.number > self.options.retries:
                raise ClusterError(f"{label} failed {attempt.number} time(s), last on {attempt.where}: {reason}; "
                                   "the finished frames are kept: run the same command again to resume") from None
            self.retried += 1
            self._say(f"warning: {label} failed on {attempt.where} ({reason}); trying it again "
                      f"(try {attempt.number + 1} of {self.options.retries + 1})")
            return attempt
        self.owners.add(outcome["owner"])
        self.nodes_used[outcome["where"]] = None
        if outcome.get("niceness", 0) > 0:
            self._say(f"note: chunks on {outcome['where']} run at niceness {outcome['niceness']} (Ray's default for "
                      "its workers), behind every other process there: start that node with "
                      "RAY_worker_niceness=0 for full speed on a machine it shares")
        for number in outcome["written"]:
            self._count(attempt.chunk.source, number)
        self.outcomes.setdefault(attempt.chunk.source, []).append(outcome)
        self.records.append((attempt.chunk.source, {
            "frames": f"{attempt.chunk.first}-{attempt.chunk.last}", "node": outcome["where"], "tries": attempt.number,
            "written": len(outcome["written"]), "wall_s": round(outcome["timings"].get("wall", 0.0), 3)}))
        return None

    def _count(self, source: int, number: int) -> None:
        done = self.done.setdefault(source, set(self.plans[source].complete))
        if number not in done:
            done.add(number)
            self.reporter.frame_done(number)

    def _say(self, text: str) -> None:
        if text not in self.said:
            self.said.add(text)
            print(f"{self.reporter.clear_line()}{text}", file=self.stderr, flush=True)

    def _drain(self) -> None:
        try:
            events = self.ray.get(self.board.drain.remote())
        except self.ray.exceptions.RayActorError:
            return  # restarting: its events are lost, the chunks' outcomes are not
        for kind, key, value in events:
            attempt = self.attempts.get(key)
            if attempt is None:
                continue
            if kind == "started":
                self.reporter.start()
                attempt.where = value["where"]
                self.owners.add(value["owner"])
            elif kind == "frame":
                self._count(attempt.chunk.source, value)
            elif kind == "message":
                self._say(value)

    def _assemble(self, plans: list[SourcePlan], chunks: dict, notes: list[str]) -> dict[int, dict]:
        """Each video's sidecar and preview video, once its chunks are done (tasks, side by side)."""
        wall = time.perf_counter() - self.started
        refs = {}
        for plan in plans:
            every, ran = chunks[plan.index]
            if plan.still or (not ran and plan.sidecar_exists):
                continue
            records = [record for source, record in self.records if source == plan.index]
            job = {"address": self.options.to_cli(), "chunk_frames": self.options.chunk_frames,
                   "retries": self.options.retries, "wall": wall, "notes": notes, "overwrite": self.request.overwrite,
                   "chunks": records, "nodes": sorted({r["node"] for r in records})}
            refs[plan.index] = self.remote["assemble"].options(num_cpus=1, max_retries=self.options.retries).remote(
                plan, every, self.outcomes.get(plan.index, []), self.owners, job)
        return {index: self._get(ref, f"assembling {plans[index].name}") for index, ref in refs.items()}

    def _result(self, plan: SourcePlan, final: dict) -> SourceResult:
        from ..pipeline.outputs import OutputLayout

        written = tuple(sorted(n for o in self.outcomes.get(plan.index, []) for n in o["written"]))
        layout = OutputLayout(Path(plan.folder), plan.name, plan.still)
        files = tuple(name for n in written for name in layout.frame_files(plan.save, n, plan.plate))
        sidecar = final.get("sidecar") or str(assembly.final_layout(plan).sidecar if not plan.still
                                              else layout.sidecar)
        video = final.get("preview_video")
        return SourceResult(path=Path(plan.path), name=plan.name, still=plan.still, folder=layout.folder,
                            first=plan.first, last=plan.last, written=written, skipped=plan.complete, context=(),
                            sidecar=Path(sidecar), files=files, preview_video=Path(video) if video else None,
                            timings={"wall": time.perf_counter() - self.started})


def run_on_cluster(request: EstimateRequest, options: ClusterOptions, *, stdout: TextIO | None = None,
                   stderr: TextIO | None = None) -> ClusterRunResult:
    """Run `request` on the cluster `options` names (module docstring); the result of every input."""
    return ClusterJob(request, options, stdout=stdout, stderr=stderr).run()
