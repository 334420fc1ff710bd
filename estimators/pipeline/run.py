"""One pipeline for every input: read -> estimate -> post-process -> write.

`run(request)` is the engine's entry: the command line, the Blender worker and operators,
the headless script and the benchmarks all call it. A still image is a one-frame
sequence: stills, image sequences and videos, mono and stereo, equirect and
perspective, all take the same stages, each on a thread of its own joined by bounded
queues (pipeline.stages):

0. solve (360 videos and sequences): the camera solve (video.camera_motion) on a decoder
   of its own, from the shot's first frame to `look_ahead` frames past the last one,
   so that any chunk gives the poses of a whole-shot run; it runs ahead of the others;
1. read: frames decoded in order (pipeline.sources), only those needed, each with its
   pose from the solve;
2. estimate: batches through the frame estimator (pipeline.frame_estimators), or, for a
   streaming one (a video network's windows), frame by frame: its predictions come out
   in order once their windows are done; meanwhile the frames wait in a compact form
   (8-bit where that is exact), so memory stays bounded by one window;
3. post-process: holes, resampling, smoothing, temporal stabilisation, calibration
   (pipeline.frame_depth), frames in order;
4. write: every file atomically, then the progress report (pipeline.outputs).

Before any work a run checks the request, probes the inputs and compares its options
with those recorded for finished frames (pipeline.resume). A frame is complete or
absent; the sidecar records the run (pipeline.sidecar). Frames are needed when they are
written or are the stabiliser's context; a streaming estimator also reads, around each run
of needed frames, the frames its windows take (`reach`), before and after, so that a chunk
or a resumed run gives the numbers of a run over the whole shot.
"""

from __future__ import annotations

import bisect
import collections
import os
import queue
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import BadInputError, Depth360Error
from ..media import image_io
from ..video.camera_motion import CameraSolver, SolveSettings
from ..video.clip_windows import compact_frame, restore_frame
from ..video.temporal import StabiliserSettings
from . import resume
from .frame_depth import make_stabiliser, postprocess_frame
from .frame_estimators import build_frame_estimator, check_stereo_frame
from .outputs import OutputLayout, describe_outputs
from .progress import Progress
from .request import EstimateRequest
from .settings import DepthSettings, resolve_settings, saved_kinds, uncalibrated_note
from .sidecar import Sidecar, camera_content, end_content, recorded_model, start_content
from .sources import Source, open_sources
from .stages import END, StageThreads
from .writers import FrameWriter, default_writers

QUEUE_FRAMES = 4  # frames buffered between stages, beyond one batch
SOLVE_QUEUE = 64  # camera poses the solve may run ahead of the read stage
DECODE_THREADS = 4  # an image sequence's files decoded at once (pipeline.sources)


@dataclass(frozen=True)
class SourceResult:
    """What a run did with one input. `written`: frames written now; `skipped`: already
    complete; `context`: estimated only to give the stabiliser its history."""

    path: Path
    name: str
    still: bool
    folder: Path
    first: int
    last: int
    written: tuple[int, ...]
    skipped: tuple[int, ...]
    context: tuple[int, ...]
    sidecar: Path
    files: tuple[str, ...]
    preview_video: Path | None
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def fps(self) -> float:
        """Frames written per second of wall time."""
        wall = self.timings.get("wall", 0.0)
        return len(self.written) / wall if wall > 0 else 0.0


@dataclass(frozen=True)
class RunResult:
    """Every input's result, in order, and the seconds spent loading the model."""

    sources: tuple[SourceResult, ...]
    load_s: float = 0.0

    def summary_lines(self) -> list[str]:
        """One line per input: what was written where (what the command line prints)."""
        lines = []
        for source in self.sources:
            if source.still:
                files = ", ".join(source.files) or "nothing new (already complete)"
                lines.append(f"{source.path}: {files} in {source.folder} ({source.timings.get('wall', 0.0):.2f} s)")
            else:
                lines.append(f"{source.path}: {len(source.written)} frames written, {len(source.skipped)} already "
                             f"complete, in {source.folder}")
        return lines


def _prefixed(error: Depth360Error, path: Path) -> Depth360Error:
    """The error, its message starting with the input's path where it does not name it yet."""
    if str(path) in str(error):
        return error
    return type(error)(f"{path}: {error}")


def _resolve_range(source: Source, frames: tuple[int, int | None] | None) -> tuple[int, int | None]:
    first, last = frames if frames is not None else (1, None)
    count = source.frame_count if source.frame_count_exact else None
    if count is not None:
        if first > count:
            raise BadInputError(f"{source.path} has {count} frames; --frames starts at {first}")
        if last is not None and last > count:
            raise BadInputError(f"{source.path} has {count} frames; --frames ends at {last}")
        last = count if last is None else last
    return first, last


def check_output_folder(folder: Path) -> None:
    """Depth360Error unless `folder` can be created and written; creates nothing."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".depth360-write-test-", suffix=".tmp")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise Depth360Error(f"cannot write to output folder {folder}: {error.strerror or error}") from None


def check_sources(request: EstimateRequest, sources: list[Source]) -> None:
    """Usage errors about the inputs: frames and rgbd on stills, frame sizes the path cannot use."""
    for source in sources:
        if source.still and request.frames is not None:
            raise BadInputError(f"{source.path}: --frames applies to videos and image sequences, not to a still image")
        if source.still and "rgbd" in request.saved:
            raise BadInputError(f"{source.path}: --save rgbd is written for videos and image sequences only")
        if source.size is not None:
            try:
                check_frame_size(request, *source.size)
            except BadInputError as error:
                raise BadInputError(f"{source.path}: {error}") from None


def check_frame_size(request: EstimateRequest, width: int, height: int) -> None:
    """BadInputError unless a width x height frame fits the request's projection and layout; a stereo
    frame whose eyes have the shape of another layout is told which one it looks like."""
    if request.projection != "equirect":
        return
    if request.stereo_input:
        check_stereo_frame(request.layout, width, height)
    elif width != 2 * height:
        raise BadInputError(f"360 footage must be twice as wide as high, the frame is {width}x{height} "
                            "(use --projection perspective for ordinary footage)")


def expected_kind(request: EstimateRequest) -> str | None:
    """The estimator kind a request's model has, known before loading it (None for a plug-in)."""
    from ..models import plugins, registry

    if request.stereo:
        return "metric-distance" if request.projection == "equirect" else "relative-disparity"
    if request.guided:
        return "metric-distance"  # the network's disparity in the stereo's metres
    if plugins.is_plugin_reference(request.model):
        return None
    try:
        return registry.get(request.model).kind
    except ValueError as error:
        raise BadInputError(str(error)) from None


def load_model(request: EstimateRequest):
    """The request's estimator (a registry network with its weights, or a plug-in); None for stereo."""
    if request.stereo:
        return None
    from ..models.network_estimator import load_estimator

    return load_estimator(request.model, request.models_dir, request.device, request.precision,
                          input_size=request.input_size)


def _total_frames(request: EstimateRequest, sources: list[Source]) -> int:
    total = 0
    for source in sources:
        first, last = request.frames or (1, None)
        last = last if last is not None else (source.frame_count or first)
        total += max(0, last - first + 1)
    return total


def run(request: EstimateRequest, *, estimator=None, frame_estimator=None,
        stabiliser: StabiliserSettings | None = None, camera: SolveSettings | None = None,
        stdout: TextIO | None = None, stderr: TextIO | None = None, writers: int | None = None) -> RunResult:
    """Run `request` (module docstring); the result of every input.

    `estimator`: an estimator object to use instead of loading `request.model`;
    `frame_estimator`: a whole frame estimator (pipeline.frame_estimators) to use as is;
    `stabiliser`: tuned temporal settings; `camera`: tuned camera-solve settings. `writers`: worker processes
    that render and write the files (pipeline.writers; None: `default_writers`). Raises BadInputError (exit 2) for bad usage or
    input, naming the file, before anything of that input is written; WeightsMissingError;
    Depth360Error for an unwritable output folder.
    """
    stderr = stderr or sys.stderr
    request.check()
    sources = open_sources(request.inputs)
    check_sources(request, sources)
    kind = frame_estimator.kind if frame_estimator is not None else expected_kind(request)
    if kind is not None:
        resolve_settings(request, kind)  # usage errors (distance without near/far) before loading
    for source in sources:
        check_output_folder(Path(request.output_dir) / ("" if source.still else source.name))
    started = time.perf_counter()
    if frame_estimator is None and estimator is None:
        estimator = load_model(request)
    load_s = time.perf_counter() - started
    reporter = Progress(_total_frames(request, sources), request.progress, stdout=stdout, stderr=stderr)
    results = []
    try:
        for source in sources:
            reporter.relabel(source.name)
            try:
                results.append(SourceRun(request, source, frame_estimator, reporter, stabiliser, stderr,
                                         estimator, load_s, camera, writers).run())
            except Depth360Error as error:
                raise _prefixed(error, source.path) from None
    finally:
        reporter.finish()
    return RunResult(tuple(results), load_s)


class SourceRun:
    """One input through the four stages (module docstring)."""

    def __init__(self, request: EstimateRequest, source: Source, frame_estimator, reporter: Progress,
                 stabiliser: StabiliserSettings | None, stderr: TextIO, estimator=None, load_s: float = 0.0,
                 camera: SolveSettings | None = None, writers: int | None = None):
        self.request = request
        self.load_s = load_s
        self.source = source
        self.reporter = reporter
        self.stderr = stderr
        self.warnings: list[str] = []
        if frame_estimator is None:
            frame_estimator = build_frame_estimator(request, estimator, warn=self.warn)
        self.frame_estimator = frame_estimator
        self.settings: DepthSettings = resolve_settings(request, frame_estimator.kind, stabiliser, camera)
        self.save = saved_kinds(request, self.settings)
        # A stereo still's left-eye plate keeps its source's precision (bits per channel; 0: none).
        self.plate = image_io.bits_per_channel(source.path) \
            if source.still and hasattr(frame_estimator, "depth_frame") else 0
        self.streaming = bool(getattr(frame_estimator, "streaming", False))
        self.first, self.last = _resolve_range(source, request.frames)
        ranged = request.frames is not None
        self.layout = OutputLayout.for_source(source, Path(request.output_dir), self.first, self.last, ranged)
        self.notes: list[str] = list(source.notes)
        self.written: list[int] = []
        self.context_frames: list[int] = []
        self.png16_ranges: dict[str, tuple[float, float]] = {}
        self.last_seen = 0
        self.stages = StageThreads()
        self.solve = None if source.still else self.settings.camera
        self.solver: CameraSolver | None = None
        self.cameras: dict[int, dict] = {}
        self.writer = FrameWriter(default_writers(source, self.frame_estimator) if writers is None else writers)

    def warn(self, message: str) -> None:
        """A warning about this input: on stderr (off the bar's line) and in the sidecar."""
        self.warnings.append(message)
        print(f"{self.reporter.clear_line()}warning: {self.source.path}: {message}", file=self.stderr, flush=True)

    def recorded_options(self) -> dict:
        """Everything that changes this input's depth (compared when a later run resumes)."""
        return {"model": recorded_model(self.frame_estimator.describe()), "depth": self.settings.recorded(),
                "input": self.source.identity()}

    def _plan(self) -> None:
        """Compare with the recorded options, clear stale temporaries, decide which frames to compute."""
        note = uncalibrated_note(self.request, self.settings)
        if note is not None:
            print(f"note: {note}", file=self.stderr)
        self.notes += resume.check_recorded_options(self.layout, self.recorded_options(), self.request.overwrite)
        resume.remove_stale_temporaries(self.layout)
        for message in self.source.notes:
            print(f"warning: {message}", file=self.stderr)
        self._complete: dict[int, bool] = {}
        last = self.last
        self.skipped = [n for n in range(self.first, last + 1) if not self.to_write(n)] if last is not None else []
        self.reporter.skipped(len(self.skipped))
        context = self.settings.context_frames
        self.start = next((n for n in range(max(1, self.first - context), (last or self.first) + 1)
                           if self.needed(n)), None)
        if last is None:
            self.start = max(1, self.first - context)
        self._plan_reads()

    def _plan_reads(self) -> None:
        """The frames to decode: those needed, or for a streaming estimator the reach of each needed frame."""
        self.read_start, self.read_last, self._read_spans = self.start, self.last, None
        if not self.streaming or self.start is None:
            return
        reach = self.frame_estimator.reach
        if self.last is None:  # unknown length: every frame from the first one's reach on
            self.read_start = max(1, reach(self.start)[0])
            self._read_spans = [(self.read_start, float("inf"))]
            return
        spans: list[list[int]] = []
        for number in range(self.start, self.last + 1):
            if not self.needed(number):
                continue
            low, high = reach(number)
            if spans and low <= spans[-1][1] + 1:
                spans[-1][1] = max(spans[-1][1], high)
            else:
                spans.append([max(1, low), high])
        count = self.source.frame_count if self.source.frame_count_exact else None
        self._read_spans = [(low, high if count is None else min(high, count)) for low, high in spans]
        self.read_start, self.read_last = self._read_spans[0][0], self._read_spans[-1][1]

    def read_wanted(self, number: int) -> bool:
        """True for a frame the read stage decodes."""
        if self._read_spans is None:
            return self.needed(number)
        i = bisect.bisect_right(self._read_spans, (number, float("inf"))) - 1
        return i >= 0 and self._read_spans[i][0] <= number <= self._read_spans[i][1]

    def complete(self, number: int) -> bool:
        if number not in self._complete:
            self._complete[number] = resume.frame_is_complete(self.layout, self.save, number, self.plate)
        return self._complete[number]

    def to_write(self, number: int) -> bool:
        return number >= self.first and (self.last is None or number <= self.last) and not self.complete(number)

    def needed(self, number: int) -> bool:
        return any(self.to_write(m) for m in range(number, number + self.settings.context_frames + 1))

    def run(self) -> SourceResult:
        """Plan, run the stages, close the sidecar; the result (raises the first stage error)."""
        started = time.perf_counter()
        self._plan()
        batch = max(1, int(self.frame_estimator.batch_size))
        self.read_q: queue.Queue = queue.Queue(maxsize=batch + QUEUE_FRAMES)
        self.estimated_q: queue.Queue = queue.Queue(maxsize=batch + QUEUE_FRAMES)
        self.files_q: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self.solve_q: queue.Queue = queue.Queue(maxsize=SOLVE_QUEUE)
        self.sidecar = Sidecar(self.layout.sidecar)
        self.preview = None
        if "preview" in self.save and self.layout.preview_video is not None:
            from ..media.preview_video import PreviewVideo

            self.preview = PreviewVideo(self.layout.preview_video, self.source.fps)
        error = None
        try:
            stages = [("read", self.read), ("estimate", self.estimate), ("post", self.post), ("write", self.write)]
            if self.solve is not None and self.start is not None:
                stages.insert(0, ("solve", self.solve_camera))
            for name, function in stages:
                self.stages.start(name, function)
            self.stages.join()
        except BaseException as caught:
            error = caught
            raise
        finally:
            self.writer.close()
            self._close(error, time.perf_counter() - started)
        return self._result(time.perf_counter() - started)

    def read(self) -> None:
        """Stage 1: decode the frames needed, in order, each with its pose when the camera is solved."""
        if self.start is None:
            self.stages.put(self.read_q, END)
            return
        tick = time.perf_counter()
        for number, rgb in self.source.frames(self.read_start, self.read_last, wanted=self.read_wanted,
                                              workers=DECODE_THREADS):
            self.last_seen = max(self.last_seen, number)
            self.stages.add_busy("read", time.perf_counter() - tick)
            camera = self._pose_of(number) if self.solve is not None else None
            self.reporter.start()
            self.stages.put(self.read_q, (number, rgb, self.to_write(number), camera))
            tick = time.perf_counter()
        if self.solve is not None:
            self._pose_of(None)  # let the solve finish (its look-ahead, cuts and warnings)
        self.stages.put(self.read_q, END)

    def solve_camera(self) -> None:
        """Stage 0 (360 videos and sequences): the camera solve, on a decoder of its own, from the shot's
        first frame to `look_ahead` frames past the last; each frame's CameraFrame in order."""
        self.solver = CameraSolver(self.solve)
        last = self.last
        if last is not None:
            last = min(last + self.solve.look_ahead, self.source.frame_count) if self.source.frame_count_exact \
                else None
        depth_frame = getattr(self.frame_estimator, "depth_frame", None)
        tick = time.perf_counter()
        for number, rgb in self.source.frames(1, last):
            cameras = self.solver.push(number, depth_frame(rgb) if depth_frame is not None else rgb)
            self.stages.add_busy("solve", time.perf_counter() - tick)
            for camera in cameras:
                self.stages.put(self.solve_q, camera)
            tick = time.perf_counter()
        for camera in self.solver.finish():
            self.stages.put(self.solve_q, camera)
        self.stages.put(self.solve_q, END)

    def _pose_of(self, number: int | None):
        """The CameraFrame of frame `number` from the solve stage (None: read to its end); warns about
        featureless frames and notes cuts within the range on the way."""
        while (camera := self.stages.get(self.solve_q)) is not END:
            if camera.number >= self.first and (self.last is None or camera.number <= self.last):
                if camera.status == "featureless":
                    self.warn(f"frame {camera.number} has too little structure to track (black, flat or "
                              "noise): it keeps the camera pose of the frame before")
                elif camera.status == "start" and camera.chain > 0:
                    self.notes.append(f"cut at frame {camera.number}: a new camera chain (world frame and units) "
                                      "and a new stabilisation reference start there")
            if camera.number == number:
                return camera
        if number is not None:
            raise RuntimeError(f"the camera solve ended before frame {number}")
        return None

    def estimate(self) -> None:
        """Stage 2: batches of frames through the frame estimator (a streaming one: frame by frame)."""
        import numpy as np

        if self.streaming:
            self._estimate_streaming()
            return
        batch = max(1, int(self.frame_estimator.batch_size))
        depth_frame: Callable | None = getattr(self.frame_estimator, "depth_frame", None)
        done = False
        while not done:
            items = []
            while len(items) < batch and (item := self.stages.get(self.read_q)) is not END:
                items.append(item)
            done = len(items) < batch
            if not items:
                continue
            tick = time.perf_counter()
            frames = np.stack([rgb for _, rgb, _, _ in items])
            predictions = self.frame_estimator.estimate(self._full_batch(frames, batch))[: len(items)]
            self.stages.add_busy("estimate", time.perf_counter() - tick)
            for stage, seconds in getattr(self.frame_estimator, "last_timings", {}).items():
                self.stages.add_busy(f"estimate_{stage}", seconds)  # the 360 fusion's own stages
            if len(predictions) != len(items):
                raise ValueError(f"frame estimator returned {len(predictions)} predictions for {len(items)} frames")
            for (number, rgb, keep, camera), prediction in zip(items, predictions, strict=True):
                picture = depth_frame(rgb) if depth_frame is not None else rgb
                self.stages.put(self.estimated_q, (number, picture, keep, prediction, camera))
        self.stages.put(self.estimated_q, END)

    def _full_batch(self, frames, batch: int):
        """A partial batch filled up to `batch` with its last frame, so that every frame goes through
        the network in a batch of the same size wherever a run or a chunk starts or ends (a network's
        float results can depend on the batch size); a source shorter than a batch is left as it is."""
        import numpy as np

        short = batch - len(frames)
        if short <= 0 or (self.source.frame_count or 1) < batch:
            return frames
        return np.concatenate([frames, np.repeat(frames[-1:], short, axis=0)])

    def _estimate_streaming(self) -> None:
        """Stage 2 for a streaming estimator: push every frame read, hand on the needed ones' predictions."""
        estimator = self.frame_estimator
        estimator.reset()  # a new input: a new shot
        waiting: dict[int, tuple] = {}  # needed frames pushed, not yet predicted: (compact picture, keep, pose)

        def hand_on(results) -> None:
            for number, prediction in results:
                if number not in waiting:
                    continue  # a frame only the estimator's windows needed
                missing = [n for n in waiting if n < number]
                if missing:
                    raise ValueError(f"frame estimator gave no prediction for frame {missing[0]}")
                picture, keep, camera = waiting.pop(number)
                self.stages.put(self.estimated_q, (number, restore_frame(picture), keep, prediction, camera))

        while (item := self.stages.get(self.read_q)) is not END:
            number, rgb, keep, camera = item
            if self.needed(number):
                waiting[number] = (compact_frame(rgb), keep, camera)
            tick = time.perf_counter()
            results = estimator.push(number, rgb)
            self._estimated(tick)
            hand_on(results)
        tick = time.perf_counter()
        results = estimator.finish()
        self._estimated(tick)
        hand_on(results)
        if waiting:
            raise ValueError(f"frame estimator gave no prediction for frame {min(waiting)}")
        self.stages.put(self.estimated_q, END)

    def _estimated(self, tick: float) -> None:
        """Count the estimate stage's busy time since `tick`, and the estimator's own stages."""
        self.stages.add_busy("estimate", time.perf_counter() - tick)
        for stage, seconds in getattr(self.frame_estimator, "last_timings", {}).items():
            self.stages.add_busy(f"estimate_{stage}", seconds)

    def post(self) -> None:
        """Stage 3: post-process and stabilise in order; render the files of the frames to write."""
        # A frame estimator may bring its own post stage (pipeline.device_frames: on its device).
        stabiliser = getattr(self.frame_estimator, "make_stabiliser", make_stabiliser)(self.settings)
        post = getattr(self.frame_estimator, "postprocess_frame", postprocess_frame)
        while (item := self.stages.get(self.estimated_q)) is not END:
            number, picture, keep, prediction, camera = item
            tick = time.perf_counter()
            depth = post(number, prediction, picture, self.settings, stabiliser, keep, camera)
            if depth is not None and not depth.mask.any():
                where = "the picture" if self.source.still else f"frame {number}"
                self.warn(f"{where} has nothing but sky (or no texture at all): written at far, mask 0")
            if depth is None:
                self.context_frames.append(number)
            else:
                if depth.camera is not None:
                    self.cameras[number] = depth.camera
                files = self.writer.prepare(number, self.layout, self.save, picture, depth, self.settings, self.plate)
                self.stages.put(self.files_q, files)
            self.stages.add_busy("post", time.perf_counter() - tick)
        self.stages.put(self.files_q, END)

    def write(self) -> None:
        """Stage 4: the sidecar before the first file, then each frame's files (pipeline.writers: perhaps
        several frames at once, on worker processes), taken back in order: preview video, progress."""
        self.emitted = self.first - 1  # the last frame put into the preview video
        pending: collections.deque = collections.deque()
        while (files := self.stages.get(self.files_q)) is not END:
            tick = time.perf_counter()
            if not self.sidecar.written:
                self.sidecar.write(**self._start_content(), size={"width": files.size[0], "height": files.size[1]})
            pending.append((files, self.writer.submit(files, self.layout)))
            while pending and (len(pending) >= self.writer.in_flight or pending[0][1].done()):
                self._written(*pending.popleft())
            self.stages.add_busy("write", time.perf_counter() - tick)
        tick = time.perf_counter()
        while pending:
            self._written(*pending.popleft())
        self.stages.add_busy("write", time.perf_counter() - tick)
        if self.preview is not None:
            end = self.last if self.last is not None else max(self.last_seen, self.emitted)
            self._preview_until(self.emitted, end + 1)

    def _written(self, files, future) -> None:
        """A frame whose files are all written: its ranges, its preview in the video, the progress."""
        try:
            ranges, preview = future.result()
        finally:
            self.writer.release(files)
        self.png16_ranges.update(ranges)
        if self.preview is not None:
            self._preview_until(self.emitted, files.number)
            self.preview.add(preview)
            self.emitted = files.number
        self.written.append(files.number)
        self.reporter.frame_done(files.number)

    def _preview_until(self, emitted: int, number: int) -> None:
        """Put the previews of already complete frames emitted+1 .. number-1 into the video."""
        from ..media.previews import read_rgb_png

        for earlier in range(emitted + 1, number):
            self.preview.add(read_rgb_png(self.layout.folder / self.layout.file_name("preview", earlier, "png")))

    def _start_content(self) -> dict:
        run_options = {"save": list(self.save), "device": self.request.device, "precision": self.request.precision,
                       "projection": self.request.projection, "layout": self.request.layout,
                       "views": self.request.views, "overwrite": self.request.overwrite}
        outputs = describe_outputs(self.layout, self.save, self.settings, self.plate, self.png16_ranges)
        return start_content(self.source, self.frame_estimator.describe(), self.recorded_options(), run_options,
                             self.first, self.last, self.settings.context_frames, outputs)

    def _frames_summary(self) -> dict:
        last = self.last if self.last is not None else max([self.last_seen, *self.written, self.first])
        rule = f"frame t depends on frames t-{self.settings.context_frames}..t"
        if self.streaming:
            rule = (f"frame t depends on the frames of its estimator windows (32 frames every 22) and on those of "
                    f"frames t-{self.settings.context_frames}..t")
        return {"first": self.first, "last": last, "written": len(self.written),
                "skipped_complete": len(self.skipped), "context_estimated": len(self.context_frames),
                "context_rule": rule}

    def _close(self, error: BaseException | None, wall: float) -> None:
        """Close the preview video and the sidecar: complete, or failed with the error."""
        success = error is None
        video = self.preview.close(success) if self.preview is not None else None
        if not self.sidecar.written:
            return  # nothing of this input was written now: leave the folder as it was
        timings = {"wall": wall, "load_model": self.load_s, **self.stages.busy}
        updates = end_content("complete" if success else "failed", self._frames_summary(), timings,
                              len(self.written), self.warnings, self.notes, video, error)
        updates["outputs"] = describe_outputs(self.layout, self.save, self.settings, self.plate, self.png16_ranges)
        if "stereo" in self.sidecar.content:
            updates["stereo"] = {**self.sidecar.content["stereo"], "warnings": list(self.warnings)}
        if self.solver is not None:
            updates["camera"] = camera_content(self.solver, self.cameras, self.settings)
        self.sidecar.write(**updates)

    def _result(self, wall: float) -> SourceResult:
        frames = self._frames_summary()
        files = tuple(name for number in self.written for name in self.layout.frame_files(self.save, number, self.plate))
        timings = {"wall": wall, **self.stages.busy}
        return SourceResult(
            path=self.source.path, name=self.source.name, still=self.source.still, folder=self.layout.folder,
            first=self.first, last=frames["last"], written=tuple(self.written), skipped=tuple(self.skipped),
            context=tuple(self.context_frames), sidecar=self.layout.sidecar, files=files,
            preview_video=self.layout.preview_video if self.preview is not None and self.preview.frames else None,
            timings=timings, notes=tuple(self.notes), warnings=tuple(self.warnings),
        )
