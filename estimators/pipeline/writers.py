"""Rendering and writing each frame's files: in the write stage's thread, or on worker processes.

`FrameWriter(workers=0)` is the plain way: the post stage renders the frame's files in memory
(outputs.render_frame) and the write stage writes them (outputs.write_frame). With
`workers` > 0 the post stage only copies the frame's four arrays (picture, distance,
disparity, mask) into one shared-memory block, and a worker process renders the previews,
encodes every EXR and PNG and writes each file atomically, so that encoding (a large part of
a 4K frame once the depth comes from a GPU) runs on as many cores as are given, and neither
the device nor the post stage waits for it. Workers are spawned, not forked (the parent
holds threads and perhaps a CUDA context). At most `in_flight` frames are being written at
once; the write stage takes them back in frame order (sidecar, preview video, progress), so
the pipeline's guarantees hold unchanged: every file is complete or absent, and a frame
counts as written only when all its files are.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import shared_memory

import numpy as np

from .frame_depth import FrameDepth
from .outputs import FrameFiles, OutputLayout, render_frame, write_frame
from .settings import DepthSettings

# Worker processes at most (each holds a frame or two of arrays and an encoder's buffers).
WRITER_PROCESSES = 8


def default_writers(source, frame_estimator) -> int:
    """Worker processes for a source's files: none for a still (starting them costs more than one
    frame's files) and none where the depth comes from the CPU (its cores are busy with the
    depth); with a GPU, up to half the cores."""
    device = getattr(frame_estimator, "device", None)
    if source.still or device is None or getattr(device, "type", "cpu") == "cpu":
        return 0
    return max(1, min(WRITER_PROCESSES, (os.cpu_count() or 2) // 2))


@dataclass
class FrameJob:
    """A frame to write on a worker: where its arrays lie in a shared block, and how to render them."""

    number: int
    size: tuple[int, int]
    block: str
    arrays: dict[str, tuple[tuple[int, ...], str, int]]  # name -> (shape, dtype, offset)
    layout: OutputLayout
    save: tuple[str, ...]
    settings: DepthSettings
    plate: int  # bits per channel of the plate, 0 for none
    memory: shared_memory.SharedMemory | None = field(default=None, repr=False)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["memory"] = None  # the parent's handle stays in the parent
        return state


def render_and_write(job: FrameJob) -> tuple[dict, np.ndarray | None]:
    """On a worker: render the frame's files from the shared arrays and write them; (PNG ranges, preview)."""
    # Attaching registers the name with the resource tracker, which the spawned workers share
    # with the parent: a set, so the parent's unlink (and unregister) stays the only one.
    block = shared_memory.SharedMemory(name=job.block)
    try:
        arrays = {name: np.ndarray(shape, np.dtype(dtype), buffer=block.buf, offset=offset)
                  for name, (shape, dtype, offset) in job.arrays.items()}
        depth = FrameDepth(arrays.get("distance"), arrays["disparity"], arrays["mask"])
        files = render_frame(job.number, job.layout, job.save, arrays["picture"], depth, job.settings, job.plate)
        ranges = write_frame(job.layout, files)
        preview = None if files.preview is None else np.array(files.preview)
        del arrays, depth, files
        return ranges, preview
    finally:
        block.close()


def _done(result) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future


class FrameWriter:
    """Renders and writes frames (see the module docstring); `workers` 0 keeps it in the calling threads."""

    def __init__(self, workers: int = 0):
        self.workers = max(0, int(workers))
        self.in_flight = 2 * self.workers if self.workers else 1
        self._pool: ProcessPoolExecutor | None = None
        self._blocks: dict[str, shared_memory.SharedMemory] = {}

    def prepare(self, number: int, layout: OutputLayout, save, picture: np.ndarray, depth: FrameDepth,
                settings: DepthSettings, plate: int) -> FrameFiles | FrameJob:
        """In the post stage: the frame's files in memory, or (workers) its arrays in a shared block."""
        if not self.workers:
            return render_frame(number, layout, save, picture, depth, settings, plate)
        named = {"picture": np.asarray(picture, np.float32), "disparity": depth.disparity, "mask": depth.mask}
        if depth.distance is not None:
            named["distance"] = depth.distance
        offsets, total = {}, 0
        for name, array in named.items():
            offsets[name] = (tuple(array.shape), array.dtype.str, total)
            total += (array.nbytes + 63) // 64 * 64
        block = shared_memory.SharedMemory(create=True, size=max(total, 1))
        for name, array in named.items():
            shape, dtype, offset = offsets[name]
            np.ndarray(shape, np.dtype(dtype), buffer=block.buf, offset=offset)[...] = array
        self._blocks[block.name] = block
        size = (depth.disparity.shape[1], depth.disparity.shape[0])
        return FrameJob(number, size, block.name, offsets, layout, tuple(save), settings, plate, block)

    def submit(self, item: FrameFiles | FrameJob, layout: OutputLayout) -> Future:
        """In the write stage: start writing a frame; the future gives (PNG ranges, preview picture)."""
        if isinstance(item, FrameFiles):
            return _done((write_frame(layout, item), item.preview))
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool.submit(render_and_write, item)

    def release(self, item: FrameFiles | FrameJob) -> None:
        """Free a written (or abandoned) frame's shared block."""
        if isinstance(item, FrameJob) and (block := self._blocks.pop(item.block, None)) is not None:
            block.close()
            block.unlink()

    def close(self) -> None:
        """Wait for the workers, stop them and free every block left (after an error)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for name in list(self._blocks):
            block = self._blocks.pop(name)
            block.close()
            block.unlink()
