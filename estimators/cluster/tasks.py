"""What a cluster job runs on the nodes: the plan, the storage probe, the chunks, the assembly.

Every function here runs inside a Ray worker process on some node, with the output
folder and the inputs at the same paths as on every other node (shared storage). The
driver (cluster.driver) wraps them with `ray.remote` when it submits them. A worker
process keeps the estimator it loaded (`cached_estimator`), so the chunks after the
first one on a node do not load the model again.
"""

from __future__ import annotations

import io
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

from ..errors import BadInputError, Depth360Error
from ..media import image_io
from ..pipeline import resume
from ..pipeline.outputs import OutputLayout
from ..pipeline.progress import Progress
from ..pipeline.request import EstimateRequest
from ..pipeline.run import (
    SourceRun,
    check_output_folder,
    check_sources,
    expected_kind,
    load_model,
    run,
)
from ..pipeline.settings import resolve_settings
from ..pipeline.sources import Source, open_sources
from ..version import __version__
from .board import LineSink, frame_of
from .plan import Chunk, SourcePlan

_ESTIMATORS: dict[tuple, object] = {}


class ClusterNodeError(Depth360Error):
    """A node cannot take part in the job (storage it cannot see or write, an input, weights)."""


def node_identity() -> dict:
    """This worker's node: its Ray id, address, host name, and the owner tag of its temporaries."""
    import ray

    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "host": socket.gethostname(), "owner": image_io.temporary_owner(),
            "version": __version__, "pid": os.getpid(), "niceness": os.nice(0)}


def describe_node(node: dict) -> str:
    """How messages name a node of `ray.nodes()`: its name, address and short id."""
    name, address, node_id = node.get("NodeName") or "", node.get("NodeManagerAddress") or "?", node.get("NodeID", "")
    if name and name != address:
        return f"{name} ({address}, id {node_id[:8]})"
    return f"{address} (id {node_id[:8]})"


def this_node() -> str:
    """`describe_node` of the node this task runs on."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    node = next((n for n in ray.nodes() if n.get("NodeID") == node_id), {"NodeID": node_id})
    return describe_node(node)


def cached_estimator(request: EstimateRequest):
    """The request's estimator, loaded once per worker process (None for stereo)."""
    key = (request.model, request.models_dir, request.device, request.precision,
           os.environ.get("CUDA_VISIBLE_DEVICES"))
    if key not in _ESTIMATORS:
        _ESTIMATORS[key] = load_model(request)
    return _ESTIMATORS[key]


def use_node_threads() -> int:
    """Give torch and OpenCV (and so the stereo edge steps' row threads, estimators.parallel_rows) this
    task's share of the node's cores (Ray sets one thread per worker); the count.

    Torch is left unimported where the estimator did not import it (a numpy plug-in)."""
    import cv2
    import ray

    context = ray.get_runtime_context()
    assigned = context.get_assigned_resources().get("CPU", 1.0) or 1.0
    node = context.get_node_id()
    total = next((n["Resources"].get("CPU", 1.0) for n in ray.nodes() if n["NodeID"] == node), 1.0) or 1.0
    threads = max(1, round(len(os.sched_getaffinity(0)) * min(1.0, assigned / total)))
    cv2.setNumThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads


def _source_plan(index: int, request: EstimateRequest, source: Source, estimator) -> tuple[SourcePlan, list[str]]:
    """One input's plan: its range and complete frames; other options refused or cleared (overwrite)."""
    planner = SourceRun(request, source, None, Progress(0, "none"), None, io.StringIO(), estimator)
    if planner.last is None:
        raise BadInputError(f"{source.path}: --cluster needs the frame count, which this video does not "
                            "record exactly; give the range with --frames A-B")
    notes = resume.check_recorded_options(planner.layout, planner.recorded_options(), request.overwrite)
    complete = tuple(n for n in range(planner.first, planner.last + 1)
                     if resume.frame_is_complete(planner.layout, planner.save, n, planner.plate))
    plan = SourcePlan(index=index, path=str(source.path), name=source.name, still=source.still,
                      first=planner.first, last=planner.last, ranged=request.frames is not None,
                      complete=complete, folder=str(planner.layout.folder),
                      context_frames=planner.settings.context_frames, save=tuple(planner.save),
                      plate=planner.plate, fps=source.fps, sidecar_exists=planner.layout.sidecar.is_file())
    return plan, notes


def plan_job(request: EstimateRequest, marker: str, token: str) -> tuple[list[SourcePlan], list[str]]:
    """The job's plan (one SourcePlan per input) and notes; then the storage marker every node must see.

    Usage errors, a missing input, and a rerun whose options differ from the finished
    frames' (pipeline.resume) raise here, before anything is written.
    """
    sources = open_sources(request.inputs)
    check_sources(request, sources)
    kind = expected_kind(request)
    if kind is not None:
        resolve_settings(request, kind)
    for source in sources:
        try:
            check_output_folder(Path(request.output_dir) / ("" if source.still else source.name))
        except Depth360Error as error:
            raise ClusterNodeError(f"node {this_node()}: {error}") from None
    estimator = cached_estimator(request)
    plans, notes = [], []
    for index, source in enumerate(sources):
        try:
            plan, source_notes = _source_plan(index, request, source, estimator)
        except Depth360Error as error:
            raise error if str(source.path) in str(error) else type(error)(f"{source.path}: {error}") from None
        plans.append(plan)
        notes += source_notes
    Path(marker).parent.mkdir(parents=True, exist_ok=True)
    image_io.write_bytes_atomic(Path(marker), token.encode())
    return plans, notes


def _input_paths(request: EstimateRequest) -> list[Path]:
    paths = []
    for text in request.inputs:
        path = Path(text)
        paths.append(path.parent if "%" in path.name else path)
    if request.model.startswith("python:"):
        from ..models.plugins import parse_plugin_reference

        paths.append(parse_plugin_reference(request.model)[0])
    return paths


def _check_weights(request: EstimateRequest, where: str) -> None:
    from ..models import plugins, registry
    from ..models.weights import checkpoint_path, weights_present

    if request.stereo or plugins.is_plugin_reference(request.model):
        return
    spec = registry.get(request.model)
    if spec.checkpoint and not weights_present(spec, request.models_dir):
        raise ClusterNodeError(f"node {where} has no weights of {spec.name} at {checkpoint_path(spec, request.models_dir)}"
                               " (every node needs them: a shared models folder, or "
                               "`depth360 models download` on each node)")


def probe_node(request: EstimateRequest, plans: list[SourcePlan], marker: str, token: str, where: str) -> dict:
    """Check this node can take part: the same output folder (the marker), writable, the inputs,
    the weights; remove the temporaries dead processes of this host left there. Its identity."""
    identity = node_identity()
    try:
        seen = Path(marker).read_bytes().decode() if Path(marker).is_file() else None
    except OSError:
        seen = None
    if seen != token:
        raise ClusterNodeError(f"node {where} does not see the output folder {request.output_dir} that the other "
                               "nodes write (no job marker there): every node must see it on shared storage, "
                               "at the same path")
    for plan in plans:
        try:
            check_output_folder(Path(plan.folder))
        except Depth360Error as error:
            raise ClusterNodeError(f"node {where}: {error}") from None
    for path in _input_paths(request):
        if not path.exists():
            raise ClusterNodeError(f"node {where} cannot see {path}: every node must see the inputs at the same "
                                   "paths as the driver (shared storage)")
    _check_weights(request, where)
    for plan in plans:
        resume.remove_stale_temporaries(OutputLayout(Path(plan.folder), plan.name, plan.still))
    return identity


def remove_marker(marker: str) -> None:
    Path(marker).unlink(missing_ok=True)


def run_chunk(request: EstimateRequest, plan: SourcePlan, chunk: Chunk, board, key: str) -> dict:
    """Run one chunk through the one pipeline, its frames reported to `board`; what it did."""
    identity = node_identity()
    where = identity["where"] = this_node()
    board.started.remote(key, identity)

    def frame(line: str) -> None:
        number = frame_of(line)
        if number is not None:
            board.frame.remote(key, number)

    chunk_request = replace(request, inputs=(plan.path,), frames=chunk.frames, progress="json", overwrite=False)
    try:
        estimator = cached_estimator(request)
        threads = use_node_threads()  # after the estimator: it is what imports torch, if anything does
        result = run(chunk_request, estimator=estimator, stdout=LineSink(frame),
                     stderr=LineSink(lambda line: board.message.remote(key, line))).sources[0]
    except Depth360Error as error:
        raise type(error)(f"on node {where}: {error}") from None
    return {"written": result.written, "skipped": result.skipped, "context": len(result.context),
            "sidecar": str(result.sidecar), "timings": result.timings, "threads": threads, **identity}
